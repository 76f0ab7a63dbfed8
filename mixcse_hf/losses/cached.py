"""GradCache (Gao et al., 2021) for the two-view MixCSE loss: batches far larger than fit in memory.

1. Embed the batch in mini-batches of ``M`` sentences without a graph, recording the RNG state before each;
2. compute the MixCSE loss on the full batch of embeddings and backpropagate it to the embeddings only;
3. re-embed each mini-batch with its recorded RNG state (the same dropout masks) and backpropagate the cached
   embedding gradients into the encoder, one mini-batch at a time.

The parameter gradients equal those of a single pass over the whole batch with the same dropout masks, while
activation memory grows with ``M``, not with the batch size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from mixcse_hf.models.encoder import embed_two_views


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


def mini_batches(features: Mapping[str, torch.Tensor], size: int) -> Iterator[dict[str, torch.Tensor]]:
    total = next(iter(features.values())).size(0)
    for start in range(0, total, size):
        yield {name: tensor[start : start + size] for name, tensor in features.items()}


@dataclass
class CachedEmbeddings:
    """Step 1's result: the full-batch views (no graph) and what step 3 needs to replay them."""

    z1: torch.Tensor
    z2: torch.Tensor
    chunks: list[dict[str, torch.Tensor]]
    states: list[RngState]


def embed_without_graph(
    model: nn.Module, features: Mapping[str, torch.Tensor], pooler_type: str, mini_batch_size: int
) -> CachedEmbeddings:
    chunks, states, firsts, seconds = [], [], [], []
    with torch.no_grad():
        for chunk in mini_batches(features, mini_batch_size):
            states.append(RngState.capture())
            z1, z2 = embed_two_views(model, chunk, pooler_type)
            chunks.append(chunk)
            firsts.append(z1)
            seconds.append(z2)
    return CachedEmbeddings(torch.cat(firsts), torch.cat(seconds), chunks, states)


def backward_from_cache(
    model: nn.Module,
    cached: CachedEmbeddings,
    grad_z1: torch.Tensor,
    grad_z2: torch.Tensor,
    pooler_type: str,
    backward: Callable[[torch.Tensor], None],
    no_sync: Callable[[], contextlib.AbstractContextManager],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> None:
    """Step 3: replay each mini-batch and push its slice of the cached gradients into the parameters. Gradient
    synchronisation (DDP) is skipped for all but the last mini-batch."""
    after_step_one = RngState.capture()
    start = 0
    for index, (chunk, state) in enumerate(zip(cached.chunks, cached.states, strict=True)):
        size = next(iter(chunk.values())).size(0)
        state.restore()
        with autocast():
            z1, z2 = embed_two_views(model, chunk, pooler_type)
        surrogate = (z1 * grad_z1[start : start + size].to(z1.dtype)).sum() + (
            z2 * grad_z2[start : start + size].to(z2.dtype)
        ).sum()
        with no_sync() if index < len(cached.chunks) - 1 else contextlib.nullcontext():
            backward(surrogate)
        start += size
    after_step_one.restore()
