"""The STS protocol: Spearman x 100 of cosines, all/mean/wmean aggregation, alignment and uniformity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.evaluation.sts import alignment_uniformity, score_task, sts_spearman
from mixcse_hf.evaluation.sts_data import StsPairs, load_stsb, load_task, read_stsb_file
from mixcse_hf.models.encoder import SentenceEncoder
from tests.conftest import minilm_path, pair_rows, write_stsb_split


class LookupEncoder:
    """A stand-in encoder with a fixed random vector per sentence (duck-types SentenceEncoder.encode)."""

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.vectors: dict[str, torch.Tensor] = {}

    def encode(
        self, sentences: list[str], batch_size: int = 64, show_progress_bar: bool | None = None, desc: str = ""
    ) -> torch.Tensor:
        for sentence in sentences:
            if sentence not in self.vectors:
                self.vectors[sentence] = torch.randn(8, generator=self.generator)
        return torch.stack([self.vectors[s] for s in sentences])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_spearman_matches_independent_computation(tiny_model_dir: str, tmp_path: Path) -> None:
    """Spearman x 100 = Pearson of ranks of gold scores vs cosines of separately encoded sentences."""
    write_stsb_split(tmp_path / "sts.csv", pair_rows(12))
    pairs = read_stsb_file(str(tmp_path / "sts.csv"))
    model, tokenizer = AutoModel.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = SentenceEncoder(model, tokenizer, "avg")
    cosines = [
        _cosine(encoder.encode([s1])[0], encoder.encode([s2])[0])
        for s1, s2 in zip(pairs.sentences1, pairs.sentences2, strict=True)
    ]
    expected = 100 * np.corrcoef(rankdata(pairs.scores), rankdata(cosines))[0, 1]
    assert sts_spearman(encoder, pairs, batch_size=4) == pytest.approx(expected, abs=1e-6)


def test_all_mean_wmean_aggregation(tiny_senteval: Path) -> None:
    """ "all" is Spearman over the concatenated subsets; mean/wmean average the per-subset values."""
    subsets = load_task("sts12", "test", str(tiny_senteval))
    subsets["MSRvid"] = StsPairs(
        subsets["MSRvid"].sentences1 * 2, subsets["MSRvid"].sentences2 * 2, subsets["MSRvid"].scores * 2
    )
    encoder = LookupEncoder()
    score = score_task(encoder, "sts12", subsets)

    per_subset, gold_all, cos_all = {}, [], []
    for name, pairs in subsets.items():
        cosines = [
            _cosine(encoder.encode([a])[0], encoder.encode([b])[0])
            for a, b in zip(pairs.sentences1, pairs.sentences2, strict=True)
        ]
        per_subset[name] = (100 * spearmanr(pairs.scores, cosines).statistic, len(pairs))
        gold_all += pairs.scores
        cos_all += cosines
    sizes = {name: size for name, (_, size) in per_subset.items()}
    assert sizes == {"MSRpar": 4, "MSRvid": 8, "SMTeuroparl": 4, "surprise.OnWN": 4, "surprise.SMTnews": 4}
    assert score.pairs == 24
    for name, (value, size) in per_subset.items():
        assert score.subsets[name] == {"spearman": pytest.approx(value, abs=1e-9), "pairs": size}
    assert score.all == pytest.approx(100 * spearmanr(gold_all, cos_all).statistic, abs=1e-9)
    values = [value for value, _ in per_subset.values()]
    assert score.mean == pytest.approx(sum(values) / 5, abs=1e-9)
    assert score.wmean == pytest.approx(sum(v * s for v, s in per_subset.values()) / 24, abs=1e-9)
    assert score.mean != pytest.approx(score.wmean)


def test_alignment_uniformity_match_definitions() -> None:
    """Alignment: mean squared distance of pairs with gold > 4; uniformity: log mean exp(-2 d^2) over all
    pairs of distinct sentences (duplicates counted once), on L2-normalised vectors."""
    pairs = StsPairs(["a", "b", "c", "d"], ["e", "a", "f", "g"], [4.5, 5.0, 2.0, 4.0])
    encoder = LookupEncoder(seed=3)
    first, second = encoder.encode(pairs.sentences1), encoder.encode(pairs.sentences2)
    alignment, uniformity = alignment_uniformity(pairs, first, second)

    unit = {s: v.double() / v.double().norm() for s, v in encoder.vectors.items()}
    expected_alignment = ((unit["a"] - unit["e"]).norm() ** 2 + (unit["b"] - unit["a"]).norm() ** 2) / 2
    names = sorted(unit)
    terms = [math.exp(-2 * float((unit[x] - unit[y]).norm() ** 2)) for i, x in enumerate(names) for y in names[i + 1 :]]
    assert len(names) == 7
    assert alignment == pytest.approx(float(expected_alignment), abs=1e-9)
    assert uniformity == pytest.approx(math.log(sum(terms) / len(terms)), abs=1e-9)


def test_shared_stsb_splits_have_documented_sizes(data_dir: Path) -> None:
    sizes = {split: len(load_stsb(split, str(data_dir / "senteval"))) for split in ("train", "dev", "test")}
    assert sizes == {"train": 5749, "dev": 1500, "test": 1379}


@pytest.mark.slow
def test_minilm_cls_stsb_dev_matches_published_anchor(data_dir: Path) -> None:
    """all-MiniLM-L6-v2 with CLS pooling scores 79.73 on STS-B dev, as measured with sentence-transformers."""
    encoder = SentenceEncoder.from_pretrained(minilm_path(), pooler_type="cls_before_pooler")
    pairs = load_stsb("dev", str(data_dir / "senteval"))
    assert sts_spearman(encoder, pairs) == pytest.approx(79.73, abs=0.01)
