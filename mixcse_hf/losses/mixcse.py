"""The MixCSE contrastive loss (Zhang et al., AAAI 2022) over two dropout views of a batch.

The embed step (two views in one forward pass, then pooling) lives in :mod:`mixcse_hf.models.batch`; this module
only turns embeddings into a loss, following the contract of :mod:`mixcse_hf.losses.base`. How mixed negatives
are formed is in :mod:`mixcse_hf.losses.mixing`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mixcse_hf.losses.mixing import (
    LAMBDA_SCHEDULES,
    MIX_STRATEGIES,
    adaptive_lambda,
    check_choice,
    mix,
    partners,
    scheduled_lambda,
)

MIXED_NEGATIVES = ("reference", "paired")
MIX_SIDES = ("both", "anchor")


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_j)`` for all i, j: (N, d) x (M, d) -> (N, M)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def _mask(rows: torch.Tensor, columns: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean (N, N) mask, True at each (rows[k], columns[k])."""
    mask = torch.zeros(n, n, dtype=torch.bool, device=rows.device)
    mask[rows, columns] = True
    return mask


class MixCSELoss(nn.Module):
    """Cross-entropy of each anchor against its positive, in-batch negatives and mixed hard negatives.

    Inputs: ``z1``, ``z2`` of shape (N, d), the pooled embeddings of the same N sentences under two dropout
    masks (row i of both is sentence i). Output: a scalar, the mean over anchors of the cross-entropy whose
    target for row i is column i (``cos(z1_i, z2_i)``). Similarities are computed in at least float32.

    Args:
        temp: softmax temperature tau (> 0); every logit is a cosine divided by it.
        mix_lambda: weight of the positive in a mixed negative, in (0, 1). ``None`` or 0 gives plain SimCSE.
            Keep it small (0.2 in the released recipe) so a mixed negative stays farther from the anchor than
            the positive.
        mask_value: value written at the masked entries of the mixed blocks. ``0.0`` is the reference
            behaviour (the entry still adds exp(0) to the denominator); ``float("-inf")`` removes it.
        mixed_negatives: ``"reference"`` reproduces ``cl_forward`` of MixCSE_AAAI2022's ``models_mix.py``:
            logits ``[A | B | C]`` (N x 3N) where ``A = cos(z1_i, z2_j)``, ``B = cos(z1_i, mix(z2)_j)`` with
            entry (i, i-1) masked, ``C = cos(mix(z1)_i, z2_j)`` with entry (i, i+1) masked, and
            ``mix(z)_j = lambda z_j + (1 - lambda) z_{j+1}`` (indices mod N, detached). ``"paired"`` is
            the paper's description: one mixed negative per anchor, logits ``[A | b]`` (N x (N+1)) with
            ``b_i = cos(z1_i, mix(z2)_i)``.
        mix_strategy: which negative is mixed with each positive (:data:`mixcse_hf.losses.mixing.MIX_STRATEGIES`);
            ``"roll"`` (the next sample) is the reference. The masked entries follow the choice: wherever a
            mixed vector holds ``1 - lambda`` of an anchor's own positive.
        lambda_schedule: :data:`mixcse_hf.losses.mixing.LAMBDA_SCHEDULES`; ``"constant"`` is the reference. The
            linear and cosine schedules move from ``mix_lambda`` to ``mix_lambda_end`` as :attr:`progress`
            goes from 0 to 1 (the trainer sets it every step).
        mix_lambda_end: the schedules' final lambda, in (0, 1).
        mix_sides: ``"both"`` (reference: blocks B and C) or ``"anchor"`` (block B only).
        log_gradient_signal: in training mode, also measure the gradient of the loss w.r.t. the anchors
            (:meth:`gradient_signal`) for :meth:`training_metrics`; two small backward passes through the loss.

    In training mode (``loss.train()``, the default of an ``nn.Module``) each forward with gradients records
    :meth:`similarity_stats` (and the gradient signal), which :meth:`training_metrics` hands to the trainer.
    """

    def __init__(
        self,
        temp: float = 0.05,
        mix_lambda: float | None = 0.2,
        mask_value: float = 0.0,
        mixed_negatives: str = "reference",
        mix_strategy: str = "roll",
        lambda_schedule: str = "constant",
        mix_lambda_end: float | None = None,
        mix_sides: str = "both",
        log_gradient_signal: bool = False,
    ) -> None:
        super().__init__()
        if not temp > 0:
            raise ValueError(f"temp must be > 0 (the softmax temperature, e.g. 0.05), got {temp}")
        for name, value in (("mix_lambda", mix_lambda), ("mix_lambda_end", mix_lambda_end)):
            if value and not 0 < value < 1:
                raise ValueError(
                    f"{name} must be in (0, 1) (weight of the positive in a mixed negative, e.g. 0.2), "
                    f"or None/0 for plain SimCSE; got {value}"
                )
        if not (mask_value == 0.0 or mask_value == -math.inf):
            raise ValueError(f"mask_value must be 0.0 (reference) or -inf, got {mask_value}")
        check_choice("mixed_negatives", mixed_negatives, MIXED_NEGATIVES)
        check_choice("mix_strategy", mix_strategy, MIX_STRATEGIES)
        check_choice("lambda_schedule", lambda_schedule, LAMBDA_SCHEDULES)
        check_choice("mix_sides", mix_sides, MIX_SIDES)
        if lambda_schedule in ("linear", "cosine") and not mix_lambda_end:
            raise ValueError(f"lambda_schedule {lambda_schedule!r} needs mix_lambda_end in (0, 1)")
        self.temp = temp
        self.mix_lambda = mix_lambda or None
        self.mask_value = mask_value
        self.mixed_negatives = mixed_negatives
        self.mix_strategy = mix_strategy
        self.lambda_schedule = lambda_schedule
        self.mix_lambda_end = mix_lambda_end
        self.mix_sides = mix_sides
        self.log_gradient_signal = log_gradient_signal
        self.progress = 0.0
        """Fraction of training done, in [0, 1]: drives the linear and cosine lambda schedules."""
        self._metrics: dict[str, torch.Tensor] = {}

    def set_training_progress(self, progress: float) -> None:
        self.progress = progress

    def training_metrics(self) -> dict[str, torch.Tensor]:
        """The statistics recorded by the last training forward (then cleared)."""
        metrics, self._metrics = self._metrics, {}
        return metrics

    def current_lambda(self) -> float:
        """The (base) lambda at :attr:`progress`."""
        return scheduled_lambda(self.lambda_schedule, self.mix_lambda, self.mix_lambda_end, self.progress)

    def _mixed(self, anchors: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed negatives built from ``z`` for ``anchors`` (row j pairs with anchor j): (mixes, partners)."""
        partner = partners(self.mix_strategy, anchors, z)
        mix_lambda: float | torch.Tensor = self.current_lambda()
        if self.lambda_schedule == "adaptive":
            mix_lambda = adaptive_lambda(mix_lambda, anchors, z[partner])
        return mix(z, partner, mix_lambda), partner

    def logits(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The (N, N), (N, 3N), (N, 2N) or (N, N+1) matrix of cosines / temp that the cross-entropy is over."""
        _check_views(z1, z2)
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        blocks = [cosine_matrix(z1, z2)]
        if self.mix_lambda is not None:
            n = z1.size(0)
            rows = torch.arange(n, device=z1.device)
            mixed_z2, partner2 = self._mixed(z1, z2)
            if self.mixed_negatives == "paired":
                blocks.append(F.cosine_similarity(z1, mixed_z2, dim=-1).unsqueeze(1))
            else:
                # Column j of B holds 1 - lambda of z2_{p(j)}, the positive of anchor p(j): (p(j), j) is masked.
                anchor_side = cosine_matrix(z1, mixed_z2)
                blocks.append(anchor_side.masked_fill(_mask(partner2, rows, n), self.mask_value))
                if self.mix_sides == "both":
                    # Row i of C holds 1 - lambda of z1_{q(i)}, whose positive is z2_{q(i)}: (i, q(i)) is masked.
                    mixed_z1, partner1 = self._mixed(z2, z1)
                    positive_side = cosine_matrix(mixed_z1, z2)
                    blocks.append(positive_side.masked_fill(_mask(rows, partner1, n), self.mask_value))
        return torch.cat(blocks, dim=1) / self.temp

    @staticmethod
    def loss_from_logits(logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy with target column i for row i."""
        targets = torch.arange(logits.size(0), device=logits.device)
        return F.cross_entropy(logits, targets)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        logits = self.logits(z1, z2)
        loss = self.loss_from_logits(logits)
        if self.training and torch.is_grad_enabled():
            self._metrics = self.similarity_stats(logits)
            if self.log_gradient_signal and z1.requires_grad:
                self._metrics.update(self.gradient_signal(logits, z1))
        return loss

    def similarity_stats(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean cosines read off ``logits`` (no extra forward): positive pairs, in-batch negatives and, when
        mixing, each anchor's own mixed negative ``cos(z1_i, mix(z2)_i)``. Returns 0-d detached tensors."""
        n = logits.size(0)
        cosines = logits.detach() * self.temp
        simcse = cosines[:, :n]
        positive = simcse.diagonal()
        stats = {
            "sim_positive": positive.mean(),
            "sim_negative": (simcse.sum() - positive.sum()) / (n * (n - 1)),
        }
        if self.mix_lambda is not None:
            own_mixed = cosines[:, n] if self.mixed_negatives == "paired" else cosines[:, n : 2 * n].diagonal()
            stats["sim_mixed_negative"] = own_mixed.mean()
        return stats

    @staticmethod
    def gradient_signal(logits: torch.Tensor, anchors: torch.Tensor) -> dict[str, torch.Tensor]:
        """The paper's quantity: the gradient of the loss w.r.t. the anchor embeddings ``anchors`` (the z1 the
        logits were computed from), its Frobenius norm and the share of it coming from the mixed columns,
        ``|g_mixed| / (|g_in-batch| + |g_mixed|)`` (0 for SimCSE). Needs the graph from ``anchors`` to
        ``logits``; leaves it intact. Returns 0-d detached tensors."""
        n = logits.size(0)
        with torch.no_grad():
            grad_logits = logits.softmax(dim=-1)
            grad_logits[torch.arange(n), torch.arange(n)] -= 1
            grad_logits /= n  # d mean-cross-entropy / d logits
        (total,) = torch.autograd.grad(logits, anchors, grad_outputs=grad_logits, retain_graph=True)
        mixed = torch.zeros_like(total)
        if logits.size(1) > n:
            (mixed,) = torch.autograd.grad(logits[:, n:], anchors, grad_outputs=grad_logits[:, n:], retain_graph=True)
        in_batch_norm, mixed_norm = (total - mixed).norm(), mixed.norm()
        return {"grad_anchor_norm": total.norm(), "grad_mixed_share": mixed_norm / (in_batch_norm + mixed_norm)}

    def extra_repr(self) -> str:
        return (
            f"temp={self.temp}, mix_lambda={self.mix_lambda}, mask_value={self.mask_value}, "
            f"mixed_negatives={self.mixed_negatives!r}, mix_strategy={self.mix_strategy!r}, "
            f"lambda_schedule={self.lambda_schedule!r}, mix_lambda_end={self.mix_lambda_end}, "
            f"mix_sides={self.mix_sides!r}, log_gradient_signal={self.log_gradient_signal}"
        )


def _check_views(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (N, d) tensors of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.size(0) < 2:
        raise ValueError(
            f"a contrastive batch needs N >= 2 sentences (in-batch negatives), got N={z1.size(0)}; "
            "raise the per-device batch size"
        )
