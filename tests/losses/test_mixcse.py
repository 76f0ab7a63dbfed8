"""Tests for ``mixcse_hf.losses.mixcse.MixCSELoss`` against an independent loop-based reference.

The reference below deliberately avoids vectorised ops and anything from
``mixcse_hf``: each cosine is a dot product over norms, logits are built row by
row, and cross-entropy is ``mean(logsumexp(row) - row[i])``.
"""

from __future__ import annotations

import math

import pytest
import torch

from mixcse_hf.losses.mixcse import MixCSELoss

ATOL = 1e-10
NS = [2, 3, 8]
LAMBDAS = [0.2, 1e-6, 0.999]
TEMPS = [0.05, 1.0]
DIMS = [5, 16]


# --------------------------------------------------------------------------- #
# Independent loop reference
# --------------------------------------------------------------------------- #


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two 1-D vectors, written out by hand."""
    return torch.dot(a, b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


def _mix(z: torch.Tensor, i: int, lam: float) -> torch.Tensor:
    """Stop-gradient mix ``lam * z_i + (1 - lam) * z_{(i+1) mod N}`` on raw vectors."""
    n = z.shape[0]
    return (lam * z[i] + (1.0 - lam) * z[(i + 1) % n]).detach()


def _mix_normalised(z: torch.Tensor, i: int, lam: float) -> torch.Tensor:
    """Wrong variant (mixing unit vectors); used only to show tests are discriminative."""
    n = z.shape[0]
    u = z[i] / torch.linalg.vector_norm(z[i])
    v = z[(i + 1) % n] / torch.linalg.vector_norm(z[(i + 1) % n])
    return (lam * u + (1.0 - lam) * v).detach()


def ref_logits(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temp: float,
    lam: float | None,
    mode: str = "reference",
    mask_value: float = 0.0,
    normalise_before_mix: bool = False,
) -> torch.Tensor:
    """Loop-built logits: SimCSE (``lam`` falsy), MixCSE reference, or paired."""
    n = z1.shape[0]
    mix = _mix_normalised if normalise_before_mix else _mix
    rows = []
    for i in range(n):
        row = [_cos(z1[i], z2[j]) / temp for j in range(n)]
        if lam:
            if mode == "paired":
                row.append(_cos(z1[i], mix(z2, i, lam)) / temp)
            else:
                for j in range(n):  # block B: anchor vs mixed positives of z2
                    if j == (i - 1) % n:
                        row.append(_cos(z1[i], mix(z2, j, lam)) / temp * 0.0 + mask_value)
                    else:
                        row.append(_cos(z1[i], mix(z2, j, lam)) / temp)
                mix4_i = mix(z1, i, lam)
                for j in range(n):  # block C: mixed anchor vs z2
                    if j == (i + 1) % n:
                        row.append(_cos(mix4_i, z2[j]) / temp * 0.0 + mask_value)
                    else:
                        row.append(_cos(mix4_i, z2[j]) / temp)
        rows.append(torch.stack(row))
    return torch.stack(rows)


def ref_loss(logits: torch.Tensor) -> torch.Tensor:
    """Manual cross-entropy with targets ``arange(N)``."""
    n = logits.shape[0]
    terms = [torch.logsumexp(logits[i], dim=0) - logits[i, i] for i in range(n)]
    return torch.stack(terms).sum() / n


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _inputs(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded leaf tensors with rows of very different norms (to expose normalisation order)."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z1 = z1 * (0.3 + 5.0 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    z2 = z2 * (0.3 + 5.0 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    return z1.to(dtype).requires_grad_(True), z2.to(dtype).requires_grad_(True)


def _grads(out: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of scalar ``out`` w.r.t. ``z1``, ``z2``; unused inputs give exact zeros."""
    g1, g2 = torch.autograd.grad(out, (z1, z2), allow_unused=True, retain_graph=True)
    g1 = torch.zeros_like(z1) if g1 is None else g1
    g2 = torch.zeros_like(z2) if g2 is None else g2
    return g1, g2


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0.0, atol=ATOL)


def _check_against_ref(
    loss_fn: MixCSELoss,
    z1: torch.Tensor,
    z2: torch.Tensor,
    temp: float,
    lam: float | None,
    mode: str = "reference",
    mask_value: float = 0.0,
) -> None:
    """Loss value, logits and both input gradients must equal the loop reference."""
    loss = loss_fn(z1, z2)
    expected_logits = ref_logits(z1, z2, temp, lam, mode, mask_value)
    expected = ref_loss(expected_logits)
    assert loss.dim() == 0
    assert loss.dtype == torch.float64
    _close(loss, expected)
    g1, g2 = _grads(loss, z1, z2)
    e1, e2 = _grads(expected, z1, z2)
    _close(g1, e1)
    _close(g2, e2)
    _close(loss_fn.logits(z1, z2).detach(), expected_logits.detach())


# --------------------------------------------------------------------------- #
# Default (reference) MixCSE
# --------------------------------------------------------------------------- #


@pytest.mark.smoke
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("temp", TEMPS)
@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("n", NS)
def test_reference_matches_loop(n: int, lam: float, temp: float, d: int) -> None:
    """Default mode (no mask/mode args) equals loop [A|B|C] loss, grads and logits."""
    z1, z2 = _inputs(n, d, seed=1000 * n + d)
    _check_against_ref(MixCSELoss(temp=temp, mix_lambda=lam), z1, z2, temp, lam)


@pytest.mark.parametrize("n", NS)
def test_reference_logits_layout_and_zero_mask(n: int) -> None:
    """Logits are N x 3N; masked B/C entries are exactly 0 and no other entry is 0."""
    temp, lam = 0.05, 0.2
    z1, z2 = _inputs(n, 7, seed=n)
    logits = MixCSELoss(temp=temp, mix_lambda=lam, mask_value=0.0, mixed_negatives="reference").logits(z1, z2)
    assert logits.shape == (n, 3 * n)
    expected_mask = torch.zeros(n, 3 * n, dtype=torch.bool)
    for i in range(n):
        expected_mask[i, n + (i - 1) % n] = True
        expected_mask[i, 2 * n + (i + 1) % n] = True
    assert torch.equal(logits.detach() == 0.0, expected_mask)
    _close(logits.detach(), ref_logits(z1, z2, temp, lam).detach())


def test_mixing_uses_unnormalised_vectors() -> None:
    """Mixing happens before normalisation (and the check can tell the difference)."""
    temp, lam = 0.05, 0.3
    z1, z2 = _inputs(6, 4, seed=7)
    logits = MixCSELoss(temp=temp, mix_lambda=lam).logits(z1, z2).detach()
    right = ref_logits(z1, z2, temp, lam).detach()
    wrong = ref_logits(z1, z2, temp, lam, normalise_before_mix=True).detach()
    assert (right - wrong).abs().max() > 1e-3
    _close(logits, right)


# --------------------------------------------------------------------------- #
# Stop-gradient on mixed vectors
# --------------------------------------------------------------------------- #


@pytest.mark.smoke
@pytest.mark.parametrize("mask_value", [0.0, -math.inf])
@pytest.mark.parametrize("n", NS)
def test_no_gradient_through_mixed_vectors(n: int, mask_value: float) -> None:
    """Block B has zero grad w.r.t. z2 and block C zero grad w.r.t. z1 (detached mixes)."""
    z1, z2 = _inputs(n, 6, seed=50 + n)
    logits = MixCSELoss(temp=0.05, mix_lambda=0.2, mask_value=mask_value).logits(z1, z2)
    finite = torch.isfinite(logits)
    masked = torch.where(finite, logits, torch.zeros_like(logits))
    block_b = masked[:, n : 2 * n].sum()
    block_c = masked[:, 2 * n : 3 * n].sum()
    b1, b2 = _grads(block_b, z1, z2)
    c1, c2 = _grads(block_c, z1, z2)
    assert torch.count_nonzero(b2) == 0
    assert torch.count_nonzero(c1) == 0
    assert b1.abs().max() > 0
    assert c2.abs().max() > 0


def test_paired_no_gradient_through_mixed_vector() -> None:
    """Paired column has zero grad w.r.t. z2 and non-zero grad w.r.t. z1."""
    n = 5
    z1, z2 = _inputs(n, 6, seed=77)
    logits = MixCSELoss(temp=0.05, mix_lambda=0.2, mixed_negatives="paired").logits(z1, z2)
    g1, g2 = _grads(logits[:, n].sum(), z1, z2)
    assert torch.count_nonzero(g2) == 0
    assert g1.abs().max() > 0


# --------------------------------------------------------------------------- #
# SimCSE mode
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("lam", [None, 0, 0.0])
@pytest.mark.parametrize("temp", TEMPS)
@pytest.mark.parametrize("n", NS)
def test_simcse_mode_matches_loop(n: int, temp: float, lam: float | None) -> None:
    """mix_lambda None/0 gives plain SimCSE: N x N logits, loss and grads match loop."""
    z1, z2 = _inputs(n, 5, seed=300 + n)
    loss_fn = MixCSELoss(temp=temp, mix_lambda=lam)
    assert loss_fn.logits(z1, z2).shape == (n, n)
    _check_against_ref(loss_fn, z1, z2, temp, None)


# --------------------------------------------------------------------------- #
# -inf mask and paired variants
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("temp", TEMPS)
@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("n", NS)
def test_neg_inf_mask_matches_loop(n: int, lam: float, temp: float) -> None:
    """mask_value=-inf: loss, grads and logits (incl. -inf entries) equal the loop reference."""
    z1, z2 = _inputs(n, 16, seed=400 + n)
    loss_fn = MixCSELoss(temp=temp, mix_lambda=lam, mask_value=float("-inf"))
    _check_against_ref(loss_fn, z1, z2, temp, lam, mask_value=-math.inf)
    g1, g2 = _grads(loss_fn(z1, z2), z1, z2)
    assert torch.isfinite(g1).all() and torch.isfinite(g2).all()


@pytest.mark.parametrize("n", NS)
def test_neg_inf_mask_positions(n: int) -> None:
    """Exactly entries (i, N+(i-1)%N) and (i, 2N+(i+1)%N) are -inf; all others finite."""
    z1, z2 = _inputs(n, 5, seed=500 + n)
    logits = MixCSELoss(temp=0.05, mix_lambda=0.2, mask_value=float("-inf")).logits(z1, z2)
    assert logits.shape == (n, 3 * n)
    expected_mask = torch.zeros(n, 3 * n, dtype=torch.bool)
    for i in range(n):
        expected_mask[i, n + (i - 1) % n] = True
        expected_mask[i, 2 * n + (i + 1) % n] = True
    assert torch.equal(torch.isneginf(logits.detach()), expected_mask)
    assert torch.isfinite(logits.detach()[~expected_mask]).all()


@pytest.mark.smoke
@pytest.mark.parametrize("temp", TEMPS)
@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("n", NS)
def test_paired_matches_loop(n: int, lam: float, temp: float) -> None:
    """mixed_negatives='paired': N x (N+1) logits, loss and grads equal the loop reference."""
    z1, z2 = _inputs(n, 5, seed=600 + n)
    loss_fn = MixCSELoss(temp=temp, mix_lambda=lam, mixed_negatives="paired")
    assert loss_fn.logits(z1, z2).shape == (n, n + 1)
    _check_against_ref(loss_fn, z1, z2, temp, lam, mode="paired")


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("temp", [0.0, -0.05, -1.0, math.inf, math.nan])
def test_invalid_temp(temp: float) -> None:
    """temp <= 0, infinite (every logit 0: nothing trains) or NaN is rejected at construction."""
    with pytest.raises(ValueError, match="temp must be a finite number > 0"):
        MixCSELoss(temp=temp)


@pytest.mark.parametrize("lam", [1.0, 1, -0.1, 1.5])
def test_invalid_mix_lambda(lam: float) -> None:
    """mix_lambda outside (0, 1) (other than None/0) is rejected."""
    with pytest.raises(ValueError, match="mix_lambda"):
        MixCSELoss(mix_lambda=lam)


@pytest.mark.parametrize("mode", ["foo", "", "Reference"])
def test_invalid_mixed_negatives(mode: str) -> None:
    """Unknown mixed_negatives is rejected."""
    with pytest.raises(ValueError, match="mixed_negatives"):
        MixCSELoss(mixed_negatives=mode)


@pytest.mark.parametrize("mask_value", [1.0, -1.0, -1e9, math.inf])
def test_invalid_mask_value(mask_value: float) -> None:
    """mask_value other than 0.0 or -inf is rejected."""
    with pytest.raises(ValueError, match="mask_value"):
        MixCSELoss(mask_value=mask_value)


@pytest.mark.parametrize("mode", ["reference", "paired"])
@pytest.mark.parametrize("n", [0, 1])
def test_batch_too_small(n: int, mode: str) -> None:
    """N < 2 raises ValueError at call time."""
    loss_fn = MixCSELoss(mixed_negatives=mode)
    with pytest.raises(ValueError):
        loss_fn(torch.randn(n, 4), torch.randn(n, 4))


@pytest.mark.parametrize(
    ("shape1", "shape2"),
    [
        ((4, 5), (4, 6)),
        ((4, 5), (3, 5)),
        ((5,), (5,)),
        ((2, 4, 5), (2, 4, 5)),
        ((4, 5), (20,)),
    ],
)
def test_bad_shapes(shape1: tuple[int, ...], shape2: tuple[int, ...]) -> None:
    """Mismatched or non-2-D inputs raise ValueError at call time."""
    loss_fn = MixCSELoss()
    with pytest.raises(ValueError):
        loss_fn(torch.randn(*shape1), torch.randn(*shape2))


# --------------------------------------------------------------------------- #
# dtype / differentiability
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"mix_lambda": None},
        {"mask_value": float("-inf")},
        {"mixed_negatives": "paired"},
    ],
)
def test_float32_finite_and_differentiable(kwargs: dict[str, object]) -> None:
    """float32 inputs give a finite float32 scalar with finite gradients."""
    z1, z2 = _inputs(8, 16, seed=9, dtype=torch.float32)
    loss = MixCSELoss(**kwargs)(z1, z2)
    assert loss.dim() == 0
    assert loss.dtype == torch.float32
    assert loss.requires_grad
    assert torch.isfinite(loss)
    loss.backward()
    assert z1.grad is not None and z2.grad is not None
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert z1.grad.abs().max() > 0 and z2.grad.abs().max() > 0
