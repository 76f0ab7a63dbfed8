"""A run's lifecycle: every saved folder (each checkpoint and the final model) is written and exported once.

Writes are counted three ways, since no single hook sees them all: every Python-level open for writing and every
rename onto a path (atomic writes) through an audit hook; every safetensors file through its writer; and every
save of a folder through the trainer's ``_save`` (the tokenizer's own files are written by its Rust core, which
no Python hook sees, once per save).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import safetensors.torch

from mixcse_hf.hub.push import hub_contents
from mixcse_hf.training.run_dir import CARD_DATA_FILE, UPLOAD_IGNORE_PATTERNS
from mixcse_hf.training.trainer import MixCSETrainer
from run_mixcse import main
from tests.test_quickstart import QUICKSTART, tiny_quickstart  # noqa: F401 (a fixture)

RUST_WRITTEN = ("tokenizer.json",)
"""Written by the tokenizers library's Rust core, which no Python hook sees: covered by the count of saves."""


class WriteCounter:
    """Counts writes per absolute path while ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.writes: Counter[str] = Counter()

    def audit(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open" and isinstance(args[0], str | Path):
            mode, flags = args[1], args[2]
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & (os.O_WRONLY | os.O_RDWR)
            if writing:
                self.writes[os.path.abspath(args[0])] += 1
        elif event == "os.rename":
            self.writes[os.path.abspath(args[1])] += 1


COUNTER = WriteCounter()
sys.addaudithook(COUNTER.audit)  # audit hooks cannot be removed: this one records only while active


@pytest.fixture
def counted_writes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every file write while the test runs, by absolute path; and every trainer save, as ``SAVE:<folder>``."""
    original_save_file = safetensors.torch.save_file

    def save_file(tensors: dict, filename: str, *args: object, **kwargs: object) -> None:
        COUNTER.writes[os.path.abspath(filename)] += 1
        original_save_file(tensors, filename, *args, **kwargs)

    for module in list(sys.modules.values()):  # every module that imported save_file under any name
        for name, value in list(vars(module).items()) if module is not None else []:
            if value is original_save_file:
                monkeypatch.setattr(module, name, save_file)
    original_trainer_save = MixCSETrainer._save

    def trainer_save(self: MixCSETrainer, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        COUNTER.writes[f"SAVE:{os.path.abspath(output_dir or self.args.output_dir)}"] += 1
        original_trainer_save(self, output_dir, state_dict)

    monkeypatch.setattr(MixCSETrainer, "_save", trainer_save)
    COUNTER.writes.clear()
    COUNTER.active = True
    yield COUNTER.writes
    COUNTER.active = False


def test_a_finished_quick_start_writes_each_exported_file_once(
    tiny_quickstart: list[str],  # noqa: F811
    tmp_path: Path,
    counted_writes: Counter[str],
) -> None:
    out = tmp_path / "out"
    flags = [*tiny_quickstart, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--save_total_limit", "5"]
    assert main([QUICKSTART, *flags]) == 0
    saves = {key.removeprefix("SAVE:"): count for key, count in counted_writes.items() if key.startswith("SAVE:")}
    assert saves == {str(out): 1, str(out / "checkpoint-2"): 1, str(out / "checkpoint-4"): 1}
    for folder in (out, out / "checkpoint-2", out / "checkpoint-4"):
        exported = hub_contents(str(folder), "someone/model", None, UPLOAD_IGNORE_PATTERNS)  # what a push uploads
        assert {"model.safetensors", "config.json", "modeling_mixcse.py", "modules.json", "README.md"} <= set(exported)
        for name in exported:
            if name not in RUST_WRITTEN:
                assert counted_writes[str(folder / name)] == 1, (str(folder / name), counted_writes[str(folder / name)])
        assert counted_writes[str(folder / CARD_DATA_FILE)] == 1
    assert "| STS-B test |" in (out / "README.md").read_text()  # the final card carries the final scores
