"""``run_mixcse.py --help``: our arguments first, in groups, without importing torch; ``--help_all`` adds the
Trainer's."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainingArguments

import run_mixcse
from mixcse_hf.models.pooling import POOLERS
from mixcse_hf.training.arguments import DataArguments, MixCSEOptions, ModelArguments
from mixcse_hf.training.help import COMMON_TRAINER_OPTIONS, GROUPS, help_text
from tests.conftest import quickstart_training_settings

REPO = Path(__file__).resolve().parents[2]
OUR_FIELDS = [f.name for cls in (ModelArguments, DataArguments, MixCSEOptions) for f in dataclasses.fields(cls)]


def test_groups_hold_every_argument_once() -> None:
    grouped = [name for _, names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(OUR_FIELDS)


def test_help_leads_with_our_groups_and_names_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_mixcse.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: run_mixcse.py [CONFIG.yaml] [--ARGUMENT VALUE ...]")
    assert len(text.splitlines()) < 265  # 250 until the backbone options (bidirectional, train_dropout, prompts)
    positions = [text.index(f"\n{title}:\n") for title in GROUPS]
    assert positions == sorted(positions)
    for name in OUR_FIELDS:
        assert f"  --{name} " in text or f"  --{name}\n" in text
    assert "  --learning_rate" not in text  # the Trainer's options are behind --help_all
    assert "--debug               show the traceback" in text


def test_help_shows_the_defaults_of_a_run_without_a_config() -> None:
    """Each of the quick start's training settings: in the closing note, or the default shown by its option."""
    text = " ".join(help_text().split())
    note = text[text.index("Without CONFIG.yaml, the shipped quickstart config's training settings are the defaults") :]
    fields = {f.name: f for cls in (ModelArguments, DataArguments, MixCSEOptions) for f in dataclasses.fields(cls)}
    for key, value in quickstart_training_settings().items():
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert f" {key} {shown}," in note or f" {key} {shown}." in note or fields[key].default == value, key


def test_help_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, run_mixcse; run_mixcse.main(['--help']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets'}), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stderr.strip() == "[]"
    assert proc.stdout.startswith("usage: run_mixcse.py")


def test_help_all_adds_every_trainer_option() -> None:
    text = help_text(trainer_options=True)
    trainer_fields = [f.name for f in dataclasses.fields(TrainingArguments) if f.init]
    for name in trainer_fields:
        if name != "debug":  # a config key only: --debug shows tracebacks
            assert f"  --{name} " in text or f"  --{name}\n" in text, name
    assert text.count("  --debug ") == 1
    assert text.index("\nTrainer options:\n") > text.index("\nmodel:\n")


def test_short_help_names_real_trainer_options() -> None:
    trainer_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(COMMON_TRAINER_OPTIONS) <= trainer_fields


CONFUSABLE = [
    ("text_column", "text_columns"),
    ("precision", "bf16", "fp16"),
    ("mixed_negatives", "mixed_negative_mask"),
    ("hard_negative_weight", "mixed_hard_negative"),
]
"""Names a newcomer takes for one another, shown side by side: each tuple is consecutive in one group."""
TOLD_APART = {
    "data": ("text_column", "text_columns"),
    "precision": ("precision", "bf16", "fp16"),
    "MixCSE loss": ("mixed_negatives", "mixed_hard_negative", "hard_negative_weight"),
}
"""Each group's description names the confusable names it holds, saying what each is for."""


@pytest.mark.parametrize("names", CONFUSABLE, ids="/".join)
def test_confusable_names_stand_side_by_side(names: tuple[str, ...]) -> None:
    ((_, fields),) = [group for group in GROUPS.values() if names[0] in group[1]]
    start = fields.index(names[0])
    assert fields[start : start + len(names)] == list(names)


@pytest.mark.parametrize("title", TOLD_APART)
def test_group_descriptions_tell_confusable_names_apart(title: str) -> None:
    description, fields = GROUPS[title]
    assert all(name in fields and name in description for name in TOLD_APART[title])


def test_helps_of_a_pair_name_each_other() -> None:
    """text_column / text_columns and precision / bf16 / fp16: each one's help names the other."""
    helps = {f.name: f.metadata["help"] for cls in (DataArguments, MixCSEOptions) for f in dataclasses.fields(cls)}
    assert "text_columns" in helps["text_column"] and "text_column)" in helps["text_columns"]
    assert "not bf16/fp16" in helps["precision"]
    assert all("instead of precision" in helps[flag] for flag in ("bf16", "fp16"))


def test_pooler_help_names_every_pooler() -> None:
    pooler_help = next(f for f in dataclasses.fields(MixCSEOptions) if f.name == "pooler_type").metadata["help"]
    for pooler in POOLERS.values():
        assert f"{pooler.name}: {pooler.description}" in pooler_help
