"""``--mask_duplicates true`` end to end: the collators' text hashes reach the loss, which logs how many logits it
masked, on map-style and streamed data, one column or triplets (through GradCache and padding-free)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import SENTENCES, train_tiny

RUNS = {
    "map-style text": ("text", []),
    "streamed text": ("text", ["--streaming", "true"]),
    "map-style triplets, GradCache, padding-free": (
        "triplets",
        ["--gradcache_mini_batch_size", "2", "--padding_free", "true", "--mixed_hard_negative", "true"],
    ),
    "streamed triplets": ("triplets", ["--streaming", "true", "--mixed_hard_negative", "true"]),
}


def _corpus(tmp_path: Path, layout: str) -> Path:
    """Three texts, each four times (one with other spacing): every batch of 4 holds a duplicate."""
    texts = [SENTENCES[0], SENTENCES[1], f"  {SENTENCES[2]} "] * 4
    if layout == "text":
        path = tmp_path / "duplicated.txt"
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        return path
    path = tmp_path / "duplicated.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive", "negative"])
        writer.writerows((SENTENCES[3 + i % 6], text, SENTENCES[9 + i % 3]) for i, text in enumerate(texts))
    return path


@pytest.mark.parametrize("run", sorted(RUNS))
def test_masked_duplicates_are_logged(run: str, tiny_model_dir: str, tmp_path: Path) -> None:
    layout, flags = RUNS[run]
    out = train_tiny(
        tiny_model_dir, _corpus(tmp_path, layout), tmp_path / "out", "--mask_duplicates", "true",
        "--logging_steps", "1", "--precision", "fp32", *flags,
    )  # fmt: skip
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    masked = [entry["masked_duplicates"] for entry in history if "loss" in entry]
    assert len(masked) == 2 and all(value > 0 for value in masked)
    assert "mask_duplicates" in (out / "README.md").read_text()
