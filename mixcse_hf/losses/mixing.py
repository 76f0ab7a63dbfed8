"""How mixed negatives are formed: which in-batch negative is mixed with each positive, and with what weight.

A mixed negative for anchor j is ``lambda_j * z2_j + (1 - lambda_j) * z2_{p(j)}``: its positive and the
negative ``p(j)``, detached. The reference fixes ``p(j) = j + 1`` and a constant lambda; the other choices here
are the ones its code left commented out or the paper describes, for ablations. Whatever the choice, lambda
must stay small enough that the mixed negative is farther from the anchor than the positive (the paper's
bound; lambda < 0.5 keeps the negative's share the larger one).
"""

from __future__ import annotations

import math

import torch

from mixcse_hf.errors import UsageError

MIX_STRATEGIES = ("roll", "random", "hardest")
"""``roll``: the next sample in the batch (reference); ``random``: a uniformly random other sample;
``hardest``: the other sample whose embedding is most similar to the anchor (chosen without gradient)."""

LAMBDA_SCHEDULES = ("constant", "linear", "cosine", "adaptive")
"""``constant``: ``mix_lambda`` throughout (reference); ``linear`` / ``cosine``: from ``mix_lambda`` to
``mix_lambda_end`` over training; ``adaptive``: per pair, ``mix_lambda * (1 - cos(anchor, negative)) / 2``, so
easy (dissimilar) negatives get more of the positive, bounded in [0, mix_lambda]."""


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def partners(strategy: str, anchors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """For each row j, the index ``p(j) != j`` of the candidate mixed with candidate j: (N,) long tensor."""
    n = anchors.size(0)
    rows = torch.arange(n, device=anchors.device)
    if strategy == "roll":
        return (rows + 1) % n
    if strategy == "random":
        return (rows + torch.randint(1, n, (n,), device=anchors.device)) % n
    if strategy == "hardest":
        with torch.no_grad():
            similarity = (
                torch.nn.functional.normalize(anchors, dim=-1) @ torch.nn.functional.normalize(candidates, dim=-1).T
            )
            similarity.fill_diagonal_(-math.inf)
            return similarity.argmax(dim=1)
    raise ValueError(f"mix_strategy must be one of {MIX_STRATEGIES}; got {strategy!r}")


def scheduled_lambda(schedule: str, start: float, end: float | None, progress: float) -> float:
    """Lambda at ``progress`` in [0, 1] of training for the linear/cosine schedules (else ``start``)."""
    if schedule not in ("linear", "cosine") or end is None:
        return start
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2


def adaptive_lambda(mix_lambda: float, anchors: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Per-pair lambda (N, 1) = ``mix_lambda * (1 - cos(anchor_j, negative_j)) / 2``, detached, in [0, mix_lambda]."""
    cosine = torch.nn.functional.cosine_similarity(anchors.detach(), negatives.detach(), dim=-1)
    return (mix_lambda * (1 - cosine) / 2).unsqueeze(1)


def mix(z: torch.Tensor, partner: torch.Tensor, mix_lambda: float | torch.Tensor) -> torch.Tensor:
    """``lambda * z_j + (1 - lambda) * z_{partner(j)}``, detached: the stop-gradient of the paper."""
    return (mix_lambda * z + (1.0 - mix_lambda) * z[partner]).detach()
