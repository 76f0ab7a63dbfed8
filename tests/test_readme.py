"""The README as a front door, and the documentation's runnable examples: the custom loss and evaluator of
docs/architecture.md and the sentence-transformers example of docs/sentence_transformers.md run (on the tiny model,
the tiny corpus and a temporary output directory instead of the real ones). Every other code block and link of
README.md and docs/ is checked by tests/test_docs.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from mixcse_hf.models.pooling import POOLERS
from tests.conftest import REPO_ROOT, train_tiny

CI_COMMANDS = (
    'pip install -e ".[dev]" -c constraints.txt && MIXCSE_DATA_DIR=../shared/data python run_mixcse.py '
    "configs/quickstart.yaml",
    'pip install -e ".[dev]" -c constraints.txt && MIXCSE_DATA_DIR=../shared/data python -m pytest',
)
"""The README's two commands: the quick start, and the tests that CI (.ci/run) runs verbatim."""

RUN_EXAMPLES = {
    "loading": ("README.md", "## Encode, evaluate, publish"),
    "custom loss and evaluator": ("docs/architecture.md", "## A custom loss and evaluator"),
    "sentence-transformers": ("docs/sentence_transformers.md", "## Use with sentence-transformers"),
}
"""The python blocks these tests run: (file, heading the block follows)."""


def doc_block(path: str, heading: str) -> str:
    """The first python code block after ``heading`` in ``path`` (relative to the repository)."""
    text = (REPO_ROOT / path).read_text(encoding="utf-8")
    match = re.search(r"^" + re.escape(heading) + r"\n.*?^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert match, f"no python block after {heading!r} in {path}"
    return match.group(1)


def run_doc_block(example: str, replacements: dict[str, str], directory: Path) -> dict:
    """Run the block of :data:`RUN_EXAMPLES` ``example`` in ``directory`` with each ``old -> new`` replacement made
    (every ``old`` must be in it: the page and the test move together); returns the block's namespace."""
    path, heading = RUN_EXAMPLES[example]
    code = doc_block(path, heading)
    for old, new in replacements.items():
        assert old in code, old
        code = code.replace(old, new)
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        exec(compile(code, path, "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_readme_starts_with_the_two_commands_ci_runs() -> None:
    """The first code block of the README holds both commands verbatim, and .ci/run runs the second one."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"^```bash\n(.*?)^```", text, flags=re.S | re.M).group(1)
    assert [line for line in first_block.splitlines() if line.startswith("pip ")] == list(CI_COMMANDS)
    assert CI_COMMANDS[1] in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_readme_stays_a_front_door() -> None:
    """At most 200 lines: the details live in docs/."""
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move details to docs/"


def test_the_readme_loading_example_gives_the_models_embedding(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path
) -> None:
    """The README's loading block, as written, on a mean-pooling checkpoint where it looks (outputs/quickstart):
    plain transformers with the pooling it shows (the card's code for the quick start's pooler, verbatim) gives
    SentenceTransformer's embedding."""
    train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "outputs" / "quickstart", "--pooler_type", "avg")
    assert POOLERS["avg"].card_code in doc_block(*RUN_EXAMPLES["loading"])
    namespace = run_doc_block("loading", {}, tmp_path)
    embeddings = torch.as_tensor(namespace["embeddings"])
    assert embeddings.shape[0] == 2
    assert torch.allclose(namespace["embedding"], embeddings, atol=1e-5)


def test_custom_loss_and_evaluator_example(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    replacements = {
        '"sentence-transformers/all-MiniLM-L6-v2"': repr(tiny_model_dir),
        '"../shared/data/wiki/wiki1m_head.txt"': repr(str(tiny_corpus)),
        "max_steps=20": "max_steps=4",
        "per_device_train_batch_size=32": "per_device_train_batch_size=4",
        "eval_steps=10": "eval_steps=2",
    }
    namespace = run_doc_block("custom loss and evaluator", replacements, tmp_path)
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
    namespace = run_doc_block("sentence-transformers", replacements, tmp_path)
    # The setting that trains MiniLM measurably (the page's numbers): [CLS] pooling, no Normalize.
    modules = [type(module).__name__ for module in namespace["model"]]
    assert modules == ["Transformer", "Pooling"] and namespace["model"][1].pooling_mode == "cls", modules
    trained = SentenceTransformer(str(tmp_path / "outputs" / "st-mixcse" / "final"))
    query = "encoder.layer.0.attention.self.query.weight"
    start = AutoModel.from_pretrained(tiny_model_dir).state_dict()[query]
    assert not torch.equal(trained[0].model.state_dict()[query], start)
