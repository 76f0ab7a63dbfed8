"""The package root: its public API, and imports that stay light (no matplotlib, no mteb)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import mixcse_hf
from tests.conftest import REPO_ROOT


def test_public_api() -> None:
    for name in ("MixCSETrainer", "MixCSETrainingArguments", "MixCSELoss", "CachedLoss", "SentenceEncoder"):
        assert name in mixcse_hf.__all__
        assert getattr(mixcse_hf, name) is not None


def test_imports_load_neither_matplotlib_nor_mteb() -> None:
    code = (
        "import sys, mixcse_hf, mixcse_hf.training.job, mixcse_hf.training.trainer; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'mteb'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.strip() == "[]"


def test_package_root_is_light_until_a_name_is_used() -> None:
    code = (
        "import sys, mixcse_hf, mixcse_hf.errors, mixcse_hf.training.arguments; "
        "light = not {'torch', 'transformers'} & {m.split('.')[0] for m in sys.modules}; "
        "mixcse_hf.MixCSELoss; print(light, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.split() == ["True", "True"]


CONSOLE_SCRIPTS = {
    "mixcse-train": "mixcse_hf.cli.train",
    "mixcse-eval": "mixcse_hf.cli.evaluate",
    "mixcse-encode": "mixcse_hf.cli.encode",
    "mixcse-mine": "mixcse_hf.cli.mine",
    "mixcse-plot": "mixcse_hf.cli.plot",
    "mixcse-push": "mixcse_hf.cli.push",
    "mixcse-export": "mixcse_hf.cli.export",
}


def test_console_scripts_are_the_documented_ones() -> None:
    installed = {e.name: e.module for e in entry_points(group="console_scripts") if e.name.startswith("mixcse-")}
    assert installed == CONSOLE_SCRIPTS


def run_console_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """The command ``script`` run with ``args`` as its module, in a fresh process."""
    command = [sys.executable, "-m", CONSOLE_SCRIPTS[script], *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", sorted(CONSOLE_SCRIPTS))
def test_each_console_script_helps_under_its_name(script: str) -> None:
    """Its module runs on its own (no import cycle) and its usage line names the command."""
    proc = run_console_script(script, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    prog = "run_mixcse.py" if script == "mixcse-train" else script
    assert proc.stdout.startswith(f"usage: {prog}")
