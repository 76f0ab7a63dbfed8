"""MixCSE as a sentence-transformers loss, for ``SentenceTransformerTrainer`` (needs the ``[st]`` extra).

Follows sentence-transformers' custom-loss contract: an ``nn.Module`` taking the model first,
``forward(sentence_features, labels) -> scalar``, ``get_config_dict()`` and ``citation`` for the model card. The
logits are :class:`mixcse_hf.losses.mixcse.MixCSELoss`'s, the same code :class:`mixcse_hf.MixCSETrainer` trains
with. Datasets it takes, by number of text columns:

- one column: unsupervised, each sentence encoded twice (two dropout masks) in one forward pass;
- two columns (anchor, positive) or three (anchor, positive, hard negative): each column encoded once, all of a
  step's rows in one forward pass when the columns tokenise alike.

:class:`CachedMixCSELoss` is the GradCache variant (sentence-transformers' ``CachedLossMixin``): batches far larger
than fit in memory, same gradients. Both compose with ``MatryoshkaLoss``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import CachedLossMixin, has_static_embedding_input
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from mixcse_hf.losses import mixcse
from mixcse_hf.losses.base import training_progress
from mixcse_hf.models.distributed import gather_with_grad

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{zhang2022mixcse,
    title = "Unsupervised Sentence Representation via Contrastive Learning with Mixing Negatives",
    author = "Zhang, Yanzhao and Zhang, Richong and Mensah, Samuel and Liu, Xudong and Mao, Yongyi",
    booktitle = "Proceedings of the AAAI Conference on Artificial Intelligence",
    volume = "36",
    number = "10",
    pages = "11730--11738",
    year = "2022",
}"""


class TrainingProgressCallback(TrainerCallback):
    """Tells a MixCSE loss how far training is, for the linear and cosine lambda schedules."""

    def __init__(self, loss: MixCSELoss) -> None:
        self.loss = loss

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.loss.follows_progress = True

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.loss.loss.set_training_progress(training_progress(state.global_step, state.max_steps))


class MixCSELoss(nn.Module):
    """MixCSE for ``SentenceTransformerTrainer``.

    Args:
        model: the ``SentenceTransformer`` being trained.
        gather_across_devices: with several processes, every process's embeddings (hard negatives included)
            join the batch, with correct gradients, as ``MixCSETrainer`` does (``mixcse_hf.models.distributed``).
        **options: every option of :class:`mixcse_hf.losses.mixcse.MixCSELoss` (``temp``, ``mix_lambda``,
            ``mixed_negatives``, ``hard_negative_weight``, ``mixed_hard_negative``…), same defaults.

    Input: ``sentence_features``, one tokenised batch per text column (1, 2 or 3 columns), and the unused
    ``labels``. Output: the scalar loss. The linear and cosine lambda schedules need the training progress:
    pass ``callbacks=[loss.progress_callback()]`` to the trainer.
    """

    def __init__(self, model: SentenceTransformer, gather_across_devices: bool = False, **options: Any) -> None:
        super().__init__()
        if options.get("log_gradient_signal"):
            raise ValueError(
                "log_gradient_signal: SentenceTransformerTrainer does not log a loss's metrics; train with "
                "run_mixcse.py / MixCSETrainer to log the gradient signal, or leave it unset"
            )
        if options.get("mask_duplicates"):
            raise ValueError(
                "mask_duplicates needs the texts' hashes, which SentenceTransformerTrainer's batches do not carry; "
                "train with run_mixcse.py / MixCSETrainer to mask duplicates, or leave it unset"
            )
        self.model = model
        self.gather_across_devices = gather_across_devices
        self.loss = mixcse.MixCSELoss(**options)
        self.follows_progress = False
        """Set by :meth:`progress_callback`'s callback when training starts."""
        self.warned_short_batch = False

    @staticmethod
    def views(sentence_features: Iterable[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """The batches to embed, one per view: a single column twice (its two dropout views), else each column."""
        features = list(sentence_features)
        if not 1 <= len(features) <= 3:
            raise ValueError(
                f"MixCSELoss takes 1 text column (unsupervised), 2 (anchor, positive) or 3 (anchor, positive, "
                f"hard negative); the dataset has {len(features)}: keep those with dataset.select_columns([...])"
            )
        return features * 2 if len(features) == 1 else features

    def embed(self, sentence_features: Iterable[dict[str, Tensor]]) -> list[Tensor]:
        """One (N, d) embedding per view, all in one forward pass where the columns tokenise alike."""
        return embed_columns(self.model, self.views(sentence_features), separate_first=False)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        return self.compute_loss_from_embeddings(self.embed(sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss of the views' embeddings (gathered from every process with ``gather_across_devices``)."""
        if self.loss.lambda_schedule in ("linear", "cosine") and not self.follows_progress and self.training:
            raise ValueError(
                f"lambda_schedule {self.loss.lambda_schedule!r} follows the training progress: pass "
                "callbacks=[loss.progress_callback()] to SentenceTransformerTrainer"
            )
        if self.gather_across_devices:
            embeddings = [gather_with_grad(view) for view in embeddings]
        if embeddings[0].size(0) < 2:
            return self.short_batch_loss(embeddings)
        return self.loss(*embeddings)

    def short_batch_loss(self, embeddings: list[Tensor]) -> Tensor:
        """A batch of one row has no in-batch negatives: it adds a zero loss (connected to the graph, so every
        process and GradCache still backpropagate), with one warning. SentenceTransformerTrainer keeps an epoch's
        short last batch unless ``dataloader_drop_last=True``."""
        if not self.warned_short_batch:
            self.warned_short_batch = True
            logger.warning(
                "MixCSELoss: a batch of one row has no in-batch negatives and adds no loss; it is an epoch's short "
                "last batch, kept because dataloader_drop_last is False (SentenceTransformerTrainer's default): pass "
                "dataloader_drop_last=True to SentenceTransformerTrainingArguments to drop it"
            )
        return sum(view[:0].sum() for view in embeddings)

    def progress_callback(self) -> TrainerCallback:
        """A trainer callback that sets the training progress before every step (lambda schedules)."""
        return TrainingProgressCallback(self)

    def get_config_dict(self) -> dict[str, Any]:
        options = self.loss.options()
        del options["log_gradient_signal"], options["mask_duplicates"]  # refused here
        return {**options, "gather_across_devices": self.gather_across_devices}

    @property
    def citation(self) -> str:
        return CITATION


class CachedMixCSELoss(CachedLossMixin, MixCSELoss):
    """:class:`MixCSELoss` with GradCache: each column is embedded in mini-batches of ``mini_batch_size`` rows
    without a graph, the loss is backpropagated to the embeddings, and a backward hook re-embeds each mini-batch
    with its recorded random state (the same dropout masks), so memory grows with ``mini_batch_size``, not the
    batch. A single column is embedded twice, as two columns with their own dropout masks.

    Args: ``model``, ``mini_batch_size`` (rows per forward pass), then those of :class:`MixCSELoss`.
    """

    def __init__(
        self, model: SentenceTransformer, mini_batch_size: int = 32, gather_across_devices: bool = False, **options: Any
    ) -> None:
        super().__init__(model, gather_across_devices=gather_across_devices, **options)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        if has_static_embedding_input(model):
            raise ValueError(
                "CachedMixCSELoss cannot split a StaticEmbedding model's inputs into mini-batches; use MixCSELoss"
            )
        self.mini_batch_size = mini_batch_size

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        return self.forward_cached(self.views(sentence_features), labels)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        loss = self.compute_loss_from_embeddings([torch.cat(column) for column in reps], labels)
        if with_backward:
            loss.backward()
            return loss.detach()
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}
