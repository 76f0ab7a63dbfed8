"""The README's code examples run: the custom loss and evaluator of its Architecture section and the
sentence-transformers example (on the tiny model, the tiny corpus and a temporary output directory instead of the
real ones)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from tests.conftest import REPO_ROOT


def readme_block(heading: str) -> str:
    """The first python code block after ``heading`` in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(heading) + r".*?```python\n(.*?)```", text, flags=re.S)
    assert match, f"no python block after {heading!r} in README.md"
    return match.group(1)


def run_readme_block(heading: str, replacements: dict[str, str], directory: Path) -> dict:
    """Run the block after ``heading`` in ``directory`` with each ``old -> new`` replacement made (every ``old``
    must be in it: the README and the test move together); returns the block's namespace."""
    code = readme_block(heading)
    for old, new in replacements.items():
        assert old in code, old
        code = code.replace(old, new)
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_custom_loss_and_evaluator_example(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    replacements = {
        '"sentence-transformers/all-MiniLM-L6-v2"': repr(tiny_model_dir),
        '"../shared/data/wiki/wiki1m_head.txt"': repr(str(tiny_corpus)),
        "max_steps=20": "max_steps=4",
        "per_device_train_batch_size=32": "per_device_train_batch_size=4",
        "eval_steps=10": "eval_steps=2",
    }
    namespace = run_readme_block("### A custom loss and evaluator", replacements, tmp_path)
    history = namespace["trainer"].state.log_history
    assert [entry["step"] for entry in history if "eval_pair_cosine" in entry] == [2, 4]
    assert all("loss_simcse" in entry and "loss_spread" in entry for entry in history if "loss" in entry)


def test_sentence_transformers_example(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    replacements = {
        'resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")': repr(tiny_model_dir),
        '"../shared/data/wiki/wiki1m_head.txt"': repr(str(tiny_corpus)),
        "num_train_epochs=1": "max_steps=3",
        "per_device_train_batch_size=64": "per_device_train_batch_size=4",
    }
    run_readme_block("## Use with sentence-transformers", replacements, tmp_path)
    trained = SentenceTransformer(str(tmp_path / "outputs" / "st-mixcse" / "final"))
    query = "encoder.layer.0.attention.self.query.weight"
    start = AutoModel.from_pretrained(tiny_model_dir).state_dict()[query]
    assert not torch.equal(trained[0].model.state_dict()[query], start)
