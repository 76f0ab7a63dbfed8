"""Negatives across devices: every process sees the embeddings of the whole global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist

try:
    from torch.distributed._functional_collectives import all_gather_single
except ImportError:  # torch 2.11 and 2.12: the same differentiable all-gather, by the name 2.13 deprecated
    from torch.distributed._functional_collectives import all_gather_tensor_autograd as all_gather_single


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N, d) from all processes in rank order -> (world * N, d), differentiably.

    The backward of the all-gather (``all_gather_single``: from a private module, but the one torch's deprecation
    of the public ``torch.distributed.nn.all_gather`` names as its replacement; no public differentiable all-gather
    exists) sums, onto each process's own rows, the gradients that every process computed
    for them. With the same global loss computed on every process and DDP averaging parameter gradients over the
    processes, the update equals that of one process holding the whole batch.
    Batch sizes must match across processes (``dataloader_drop_last``).
    """
    if world_size() == 1:
        return tensor
    return all_gather_single(tensor.contiguous(), 0, dist.group.WORLD)


def gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N, ...) from all processes in rank order, without gradient (integer tensors such as
    the text hashes that travel with the embeddings of :func:`gather_with_grad`)."""
    if world_size() == 1:
        return tensor
    pieces = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(pieces, tensor.contiguous())
    return torch.cat(pieces)
