"""Negatives across devices: every process sees the embeddings of the whole global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N, d) from all processes in rank order -> (world * N, d), differentiably.

    The backward of the autograd-aware all-gather sums, onto each process's own rows, the gradients that every
    process computed for them. With the same global loss computed on every process and DDP averaging
    parameter gradients over the processes, the update equals that of one process holding the whole batch.
    Batch sizes must match across processes (``dataloader_drop_last``).
    """
    if world_size() == 1:
        return tensor
    return torch.cat(dist_fn.all_gather(tensor.contiguous()), dim=0)
