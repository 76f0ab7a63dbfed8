"""The SentEval/SimCSE STS protocol: cosine similarity, Spearman x 100, "all"/"mean"/"wmean" aggregation;
plus alignment and uniformity (Wang & Isola, 2020) of the embeddings."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import evaluate
import numpy as np
import torch
import torch.nn.functional as F

from mixcse_hf.evaluation.sts_data import StsPairs
from mixcse_hf.models.encoder import SentenceEncoder

logger = logging.getLogger(__name__)
ALIGNMENT_MIN_SCORE = 4.0
STS_SPEARMAN_METRIC = Path(__file__).with_name("metrics") / "sts_spearman"


def encode_pairs(
    encoder: SentenceEncoder,
    pairs: StsPairs,
    batch_size: int = 128,
    show_progress_bar: bool | None = None,
    desc: str = "Encoding",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of both sides of ``pairs`` in one encode call (progress bar ``desc``) -> two (len(pairs), d)
    tensors."""
    embeddings = encoder.encode(
        pairs.sentences1 + pairs.sentences2, batch_size=batch_size, show_progress_bar=show_progress_bar, desc=desc
    )
    return embeddings[: len(pairs)], embeddings[len(pairs) :]


@functools.cache
def sts_spearman_metric() -> evaluate.EvaluationModule:
    """The STS Spearman metric, an ``evaluate`` module shipped in this package (loaded by path: no network)."""
    return evaluate.load(str(STS_SPEARMAN_METRIC), keep_in_memory=True)


def spearman100(gold: np.ndarray | list[float], predicted: np.ndarray | torch.Tensor) -> float:
    """Spearman x 100 of ``predicted`` similarities against ``gold`` scores (:func:`sts_spearman_metric`)."""
    result = sts_spearman_metric().compute(
        predictions=np.asarray(predicted, dtype=np.float64), references=np.asarray(gold, dtype=np.float64)
    )
    return result["spearman"]


def sts_spearman(
    encoder: SentenceEncoder,
    pairs: StsPairs,
    batch_size: int = 128,
    show_progress_bar: bool | None = None,
    desc: str = "Encoding",
) -> float:
    """Spearman correlation x 100 between gold scores and cosine similarities of the encoded pairs."""
    first, second = encode_pairs(encoder, pairs, batch_size, show_progress_bar, desc)
    return spearman100(pairs.scores, F.cosine_similarity(first, second, dim=-1).numpy())


def stsb_scores(
    encoder: SentenceEncoder, splits: Mapping[str, StsPairs], poolers: Sequence[str], batch_size: int, label: str
) -> dict[str, dict[str, float]]:
    """Spearman x 100 (rounded to 2 decimals) of ``encoder`` with each of ``poolers`` on each STS-B split:
    pooler -> split -> value, each logged with ``label`` (e.g. "start model")."""
    scores: dict[str, dict[str, float]] = {}
    pooler_type = encoder.pooler_type
    try:
        for pooler in poolers:
            encoder.pooler_type = pooler
            for split, pairs in splits.items():
                desc = f"{label}, STS-B {split} ({pooler})"
                value = sts_spearman(encoder, pairs, batch_size=batch_size, desc=desc)
                scores.setdefault(pooler, {})[split] = round(value, 2)
                logger.info("%s: Spearman x100 %.2f", desc, value)
    finally:
        encoder.pooler_type = pooler_type
    return scores


def alignment_uniformity(
    pairs: StsPairs, first: torch.Tensor, second: torch.Tensor, min_score: float = ALIGNMENT_MIN_SCORE
) -> tuple[float, float]:
    """(alignment, uniformity) of L2-normalised embeddings, as the SimCSE paper computes them on STS-B.

    Alignment: mean squared distance of the pairs whose gold score is above ``min_score`` (lower is better).
    Uniformity: log of the mean of exp(-2 * squared distance) over all pairs of distinct sentences (lower is
    better).
    """
    first, second = F.normalize(first.double(), dim=-1), F.normalize(second.double(), dim=-1)
    positive = torch.tensor(pairs.scores) > min_score
    alignment = (first[positive] - second[positive]).norm(dim=-1).pow(2).mean()
    unique: dict[str, torch.Tensor] = {}
    for sentence, embedding in zip(pairs.sentences1 + pairs.sentences2, torch.cat([first, second]), strict=True):
        unique.setdefault(sentence, embedding)
    uniformity = torch.pdist(torch.stack(list(unique.values()))).pow(2).mul(-2).exp().mean().log()
    return float(alignment), float(uniformity)


@dataclass
class TaskScore:
    """Spearman x 100 of one task: per subset, over all subsets concatenated ("all", the number the SimCSE and
    MixCSE papers report), and the plain and pair-weighted means of the subsets."""

    task: str
    subsets: dict[str, dict[str, float]]
    all: float
    mean: float
    wmean: float
    pairs: int


def score_task(encoder: SentenceEncoder, task: str, subsets: dict[str, StsPairs], batch_size: int = 128) -> TaskScore:
    """Encode every subset of ``task`` in one call and score it (see :func:`score_embeddings`)."""
    first, second = encode_pairs(encoder, StsPairs.concat(subsets.values()), batch_size)
    return score_embeddings(task, subsets, first, second)


def score_embeddings(task: str, subsets: dict[str, StsPairs], first: torch.Tensor, second: torch.Tensor) -> TaskScore:
    """Scores of ``task`` from the embeddings of its subsets concatenated in order (``first``/``second``: the two
    sides, one row per pair)."""
    scores = [score for pairs in subsets.values() for score in pairs.scores]
    cosines = F.cosine_similarity(first, second, dim=-1).numpy()
    per_subset, start = {}, 0
    for name, pairs in subsets.items():
        size = len(pairs)
        per_subset[name] = {"spearman": spearman100(pairs.scores, cosines[start : start + size]), "pairs": size}
        start += size
    values = np.array([entry["spearman"] for entry in per_subset.values()])
    sizes = np.array([entry["pairs"] for entry in per_subset.values()])
    return TaskScore(
        task=task,
        subsets=per_subset,
        all=spearman100(scores, cosines),
        mean=float(values.mean()),
        wmean=float((values * sizes).sum() / sizes.sum()),
        pairs=len(scores),
    )
