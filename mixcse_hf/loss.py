"""The MixCSE contrastive loss (Zhang et al., AAAI 2022) over two dropout views of a batch.

The embed step (two views in one forward pass, then pooling) lives in :mod:`mixcse_hf.modeling`; this module
only turns embeddings into a loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MIXED_NEGATIVES = ("reference", "paired")


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_j)`` for all i, j: (N, d) x (M, d) -> (N, M)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def mix_with_next(z: torch.Tensor, mix_lambda: float) -> torch.Tensor:
    """``lambda * z_j + (1 - lambda) * z_{(j+1) mod N}``, detached: the stop-gradient of the paper."""
    return (mix_lambda * z + (1.0 - mix_lambda) * z.roll(-1, dims=0)).detach()


def _offset_mask(n: int, offset: int, device: torch.device) -> torch.Tensor:
    """Boolean (N, N) mask that is True at (i, (i + offset) mod N)."""
    rows = torch.arange(n, device=device)
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[rows, (rows + offset) % n] = True
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
    """

    def __init__(
        self,
        temp: float = 0.05,
        mix_lambda: float | None = 0.2,
        mask_value: float = 0.0,
        mixed_negatives: str = "reference",
    ) -> None:
        super().__init__()
        if not temp > 0:
            raise ValueError(f"temp must be > 0 (the softmax temperature, e.g. 0.05), got {temp}")
        if mix_lambda and not 0 < mix_lambda < 1:
            raise ValueError(
                f"mix_lambda must be in (0, 1) (weight of the positive in a mixed negative, e.g. 0.2), "
                f"or None/0 for plain SimCSE; got {mix_lambda}"
            )
        if not (mask_value == 0.0 or mask_value == -math.inf):
            raise ValueError(f"mask_value must be 0.0 (reference) or -inf, got {mask_value}")
        if mixed_negatives not in MIXED_NEGATIVES:
            raise ValueError(f"mixed_negatives must be one of {MIXED_NEGATIVES}, got {mixed_negatives!r}")
        self.temp = temp
        self.mix_lambda = mix_lambda or None
        self.mask_value = mask_value
        self.mixed_negatives = mixed_negatives

    def logits(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The (N, N), (N, 3N) or (N, N+1) matrix of cosines / temp that the cross-entropy is taken over."""
        _check_views(z1, z2)
        dtype = torch.promote_types(z1.dtype, torch.float32)
        z1, z2 = z1.to(dtype), z2.to(dtype)
        blocks = [cosine_matrix(z1, z2)]
        if self.mix_lambda is not None:
            mixed_z2 = mix_with_next(z2, self.mix_lambda)
            if self.mixed_negatives == "paired":
                blocks.append(F.cosine_similarity(z1, mixed_z2, dim=-1).unsqueeze(1))
            else:
                n = z1.size(0)
                # Entry (i, i-1) of B mixes 1 - lambda of z2_i, the anchor's own positive: masked out.
                anchor_side = cosine_matrix(z1, mixed_z2)
                blocks.append(anchor_side.masked_fill(_offset_mask(n, -1, z1.device), self.mask_value))
                # Symmetrically, mix(z1)_i holds 1 - lambda of z1_{i+1}, the positive of z2_{i+1}.
                positive_side = cosine_matrix(mix_with_next(z1, self.mix_lambda), z2)
                blocks.append(positive_side.masked_fill(_offset_mask(n, 1, z1.device), self.mask_value))
        return torch.cat(blocks, dim=1) / self.temp

    @staticmethod
    def loss_from_logits(logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy with target column i for row i."""
        targets = torch.arange(logits.size(0), device=logits.device)
        return F.cross_entropy(logits, targets)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.loss_from_logits(self.logits(z1, z2))

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

    def extra_repr(self) -> str:
        return (
            f"temp={self.temp}, mix_lambda={self.mix_lambda}, mask_value={self.mask_value}, "
            f"mixed_negatives={self.mixed_negatives!r}"
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
