"""The loss contract: what :class:`mixcse_hf.MixCSETrainer` accepts as ``loss=``.

A loss is an ``nn.Module`` whose ``forward(*embeddings)`` gets one (N, d) tensor per view of the batch, in column
order (unsupervised: the two dropout views ``(z1, z2)``; pairs: ``(anchors, positives)``; triplets:
``(anchors, positives, negatives)``), already gathered from every process, and returns either a scalar or a
dict of named scalar components, which the trainer sums into the training loss and logs as ``loss_<name>``.

Two optional methods let the trainer talk to it:

- ``set_training_progress(progress: float)``: called before every training step with the fraction of training
  done, in [0, 1] (schedules such as MixCSE's lambda schedule);
- ``training_metrics() -> dict[str, Tensor]``: diagnostics of the last training forward (0-d, detached), which
  the trainer averages between logging steps and logs next to the loss.

A batch that carries text hashes (:data:`mixcse_hf.models.batch.TEXT_HASH`, added by the collators when the
loss masks duplicates) also passes ``text_hashes=``: an (N, columns) int64 tensor, gathered like the embeddings,
row i of it the hashes of row i's texts; a loss that masks no duplicates is never given one.

A loss that must run the model itself (GradCache) subclasses :class:`BatchLoss` instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mixcse_hf.models.batch import BatchEmbedder, TextBatch, text_hashes

LossOutput = torch.Tensor | Mapping[str, torch.Tensor]


class BatchLoss(nn.Module):
    """A loss that embeds the batch itself: ``forward(embedder, batch) -> scalar | dict`` where ``embedder`` is
    the trainer's :class:`~mixcse_hf.models.batch.BatchEmbedder` and ``batch`` the step's text columns."""

    def forward(self, embedder: BatchEmbedder, batch: TextBatch) -> LossOutput:
        raise NotImplementedError


def batch_loss(loss: nn.Module, embedder: BatchEmbedder, batch: TextBatch) -> LossOutput:
    """Run ``loss`` on ``batch``: a :class:`BatchLoss` embeds it itself; any other loss gets the gathered
    embeddings of one forward pass."""
    if isinstance(loss, BatchLoss):
        return loss(embedder, batch)
    return loss(*(embedder.gather(embeddings) for embeddings in embedder(batch)), **hash_arguments(embedder, batch))


def hash_arguments(embedder: BatchEmbedder, batch: TextBatch) -> dict[str, torch.Tensor]:
    """``{"text_hashes": the batch's hashes gathered from every process}``, or nothing when it carries none."""
    hashes = text_hashes(batch)
    return {} if hashes is None else {"text_hashes": embedder.gather_hashes(hashes)}


def total_loss(output: LossOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(scalar to backpropagate, {component name: detached value})``; a scalar output has no components."""
    if isinstance(output, torch.Tensor):
        return output, {}
    if not output:
        raise ValueError("the loss returned an empty dict; return a scalar or named scalar components")
    components = list(output.values())
    return sum(components[1:], components[0]), {f"loss_{name}": value.detach() for name, value in output.items()}


def training_progress(global_step: int, max_steps: int) -> float:
    """The fraction of training done that ``set_training_progress`` gets: steps taken over the planned steps."""
    return global_step / max(max_steps, 1)


def set_training_progress(loss: nn.Module, progress: float) -> None:
    for module in loss.modules():
        if hasattr(module, "set_training_progress"):
            module.set_training_progress(progress)


def training_metrics(loss: nn.Module) -> dict[str, torch.Tensor]:
    metrics: dict[str, torch.Tensor] = {}
    for module in loss.modules():
        if hasattr(module, "training_metrics"):
            metrics.update(module.training_metrics())
    return metrics
