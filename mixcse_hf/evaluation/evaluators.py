"""Evaluators for training: what :class:`mixcse_hf.MixCSETrainer` accepts as ``evaluator=``.

The contract: a callable ``evaluator(encoder) -> dict[str, float]`` that embeds what it needs with ``encoder``
(a :class:`~mixcse_hf.models.encoder.SentenceEncoder` over the model being trained, with the evaluation pooler)
and returns named metrics. The trainer logs each as ``eval_<name>``; ``metric_for_best_model`` picks any of
them by name, and the model card and the training-curve plot show whatever metrics exist.
"""

from __future__ import annotations

import torch.nn.functional as F

from mixcse_hf.evaluation.sts import alignment_uniformity, encode_pairs, spearman100
from mixcse_hf.evaluation.sts_data import StsPairs
from mixcse_hf.models.encoder import SentenceEncoder


class STSEvaluator:
    """Spearman x 100 of cosine similarities on STS pairs, plus the alignment and uniformity of the embeddings.

    Args:
        pairs: the pairs and gold scores (e.g. ``load_stsb("dev", senteval_dir)``).
        name: metric prefix: returns ``{name}_spearman``.
        batch_size: sentences per encoding batch.
        alignment_uniformity: also return ``alignment`` and ``uniformity`` (Wang & Isola, as the SimCSE paper
            computes them on STS-B); keep it on one evaluator only, the names carry no prefix.
    """

    def __init__(
        self, pairs: StsPairs, name: str = "stsb", batch_size: int = 128, alignment_uniformity: bool = True
    ) -> None:
        if not len(pairs):
            raise ValueError(f"STSEvaluator {name!r} got no pairs")
        self.pairs = pairs
        self.name = name
        self.batch_size = batch_size
        self.alignment_uniformity = alignment_uniformity

    def __call__(self, encoder: SentenceEncoder) -> dict[str, float]:
        first, second = encode_pairs(encoder, self.pairs, self.batch_size, show_progress_bar=False)
        cosines = F.cosine_similarity(first, second, dim=-1)
        metrics = {f"{self.name}_spearman": round(spearman100(self.pairs.scores, cosines), 4)}
        if self.alignment_uniformity:
            alignment, uniformity = alignment_uniformity(self.pairs, first, second)
            metrics.update(alignment=round(alignment, 4), uniformity=round(uniformity, 4))
        return metrics
