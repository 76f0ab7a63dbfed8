"""GradCache (Gao et al., 2021) as a wrapper of any loss: batches far larger than fit in memory.

1. Embed the batch in mini-batches of ``M`` rows without a graph, recording the RNG state before each; the last
   mini-batch keeps its graph (its backward then needs no second forward);
2. compute the wrapped loss on the full batch of embeddings (gathered across processes) and backpropagate it to
   the embeddings only: the cached embedding gradients;
3. return the loss as a leaf whose backward hook, when the Trainer's own ``training_step`` calls backward on it,
   re-embeds every other mini-batch with its recorded RNG state (the same dropout masks) and backpropagates its
   slice of the cached gradients, scaled by the incoming gradient (gradient accumulation, fp16 loss scaling).

The parameter gradients equal those of one pass over the whole batch with the same dropout masks, while activation
memory grows with ``M``, not with the batch size. Like sentence-transformers' cached losses, the backward hook
calls ``backward`` itself, which DeepSpeed's engine does not support.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mixcse_hf.losses.base import BatchLoss, LossOutput, hash_arguments, total_loss
from mixcse_hf.models.batch import BatchEmbedder, TextBatch, batch_rows, slice_rows


@dataclass
class RngState:
    """The CPU and (when used) CUDA random states, to replay dropout masks exactly."""

    cpu: torch.Tensor
    cuda: list[torch.Tensor] | None

    @classmethod
    def capture(cls) -> RngState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _surrogate(embeddings: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient w.r.t. each embedding is ``scale * grad``."""
    return sum((z * (g * scale).to(z.dtype)).sum() for z, g in zip(embeddings, grads, strict=True))


class CachedLoss(BatchLoss):
    """``loss`` computed with GradCache: same value and gradients, memory bounded by ``mini_batch_size`` rows.

    Args:
        loss: any loss of the contract in :mod:`mixcse_hf.losses.base` (it gets the full batch's embeddings).
        mini_batch_size: rows (sentences, each with all its views/columns) embedded per forward pass.

    Input: the trainer's :class:`~mixcse_hf.models.batch.BatchEmbedder` and the step's text columns (their text
    hashes, when carried, go to ``loss`` with the whole batch, gathered). Output: what
    ``loss`` returns, detached, with one entry a leaf whose backward runs step 3.
    """

    def __init__(self, loss: nn.Module, mini_batch_size: int) -> None:
        super().__init__()
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.loss = loss
        self.mini_batch_size = mini_batch_size

    def forward(self, embedder: BatchEmbedder, batch: TextBatch) -> LossOutput:
        rows = batch_rows(batch)
        chunks = [
            slice_rows(batch, start, start + self.mini_batch_size) for start in range(0, rows, self.mini_batch_size)
        ]
        states, pieces = [], []
        with torch.no_grad():
            for chunk in chunks[:-1]:
                states.append(RngState.capture())
                pieces.append(embedder(chunk))
        # With several mini-batches the kept one must not arm DDP's gradient sync: the last re-embedded one does.
        with embedder.no_sync() if len(chunks) > 1 else contextlib.nullcontext():
            kept = embedder(chunks[-1])
        views = [
            torch.cat([piece[view] for piece in pieces] + [kept[view].detach()]).requires_grad_()
            for view in range(len(kept))
        ]
        output = self.loss(*(embedder.gather(view) for view in views), **hash_arguments(embedder, batch))
        loss, _ = total_loss(output)
        cached_grads = torch.autograd.grad(loss, views)
        kept_start = rows - batch_rows(chunks[-1])

        def replay(grad_output: torch.Tensor) -> None:
            after_forward = RngState.capture()
            with torch.enable_grad():
                _surrogate(kept, [grad[kept_start:] for grad in cached_grads], grad_output).backward()
                start = 0
                for index, (chunk, state) in enumerate(zip(chunks[:-1], states, strict=True)):
                    size = batch_rows(chunk)
                    state.restore()
                    last = index == len(states) - 1
                    with contextlib.nullcontext() if last else embedder.no_sync():
                        embeddings = embedder(chunk)
                        grads = [grad[start : start + size] for grad in cached_grads]
                        _surrogate(embeddings, grads, grad_output).backward()
                    start += size
            after_forward.restore()

        leaf = loss.detach().requires_grad_()
        leaf.register_hook(replay)
        if isinstance(output, torch.Tensor):
            return leaf
        # Components: the first carries the whole loss's gradient, so their sum backpropagates exactly once.
        names = list(output)
        values = [leaf - sum(value.detach() for value in list(output.values())[1:])] if len(names) > 1 else [leaf]
        return dict(zip(names, values + [output[name].detach() for name in names[1:]], strict=True))
