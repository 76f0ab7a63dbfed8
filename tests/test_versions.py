"""Versions that travel with the model: every command's ``--version``, the run record, the model card, and the
warning of a run resumed on other versions."""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import pytest

import mixcse_hf
from mixcse_hf.hub.card import ModelCardInfo, render_model_card
from mixcse_hf.training.run_dir import read_run_record, write_run_record
from mixcse_hf.versions import changed_versions, stack_versions
from tests.conftest import train_tiny
from tests.test_package import CONSOLE_SCRIPTS, run_console_script


@pytest.mark.parametrize("script", sorted(CONSOLE_SCRIPTS))
def test_every_command_prints_the_versions(script: str) -> None:
    proc = run_console_script(script, "--version")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"mixcse_hf {mixcse_hf.__version__} (python ")
    assert f"torch {version('torch')}" in proc.stdout
    assert f"transformers {version('transformers')}" in proc.stdout


def test_the_package_version_has_one_home() -> None:
    """setup.py reads the version from the package, so the installed metadata and ``__version__`` agree."""
    assert version("mixcse_hf") == mixcse_hf.__version__


def test_changed_versions_names_each_change() -> None:
    old = {"mixcse_hf": "0.2.0", "torch": "2.13.0", "peft": "0.21.2"}
    new = {"mixcse_hf": "0.2.0", "torch": "2.15.0", "datasets": "5.2.0"}
    assert changed_versions(old, new) == ["datasets absent -> 5.2.0", "peft 0.21.2 -> absent", "torch 2.13.0 -> 2.15.0"]
    assert changed_versions(new, new) == []


def test_the_card_lists_the_versions() -> None:
    card = render_model_card(
        ModelCardInfo(model_name="m", base_model=None, pooler="avg", recipe={}, versions={"torch": "2.13.0"})
    )
    assert "## Framework versions\n\n- torch: 2.13.0\n" in card


def test_a_run_records_its_versions_and_warns_when_a_resume_changes_them(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out")
    current = stack_versions()
    record = read_run_record(str(out))
    assert record["versions"] == current
    assert f"- torch: {current['torch']}\n" in (out / "README.md").read_text(encoding="utf-8")

    write_run_record(str(out), {**record, "versions": {**current, "torch": "2.11.0"}})
    flags = ["--max_steps", "3", "--resume_changed_settings", "max_steps"]
    with caplog.at_level(logging.WARNING, logger="mixcse_hf.training.job"):
        train_tiny(tiny_model_dir, tiny_corpus, out, *flags)
    warnings = [r.message for r in caplog.records if "other package versions" in r.message]
    assert warnings == [
        f"Resuming with other package versions than the run's so far: torch 2.11.0 -> {current['torch']}"
    ]
    assert read_run_record(str(out))["versions"] == current
