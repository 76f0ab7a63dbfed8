"""Mixing options of MixCSELoss (issue: beyond the paper): strategies, lambda schedules, sides, masks, and the
gradient-signal statistic. The reference default is checked against the loop implementation in test_loss.py."""

from __future__ import annotations

import math

import pytest
import torch

from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.losses.mixing import adaptive_lambda, partners, scheduled_lambda


def _views(n: int = 6, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, d, generator=generator, dtype=torch.float64, requires_grad=True)
    return z1, z2


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_roll_partners_are_the_next_sample() -> None:
    z1, z2 = _views()
    assert partners("roll", z1, z2).tolist() == [1, 2, 3, 4, 5, 0]


def test_hardest_picks_the_most_similar_other_sample() -> None:
    z1, z2 = _views(n=7)
    chosen = partners("hardest", z1, z2)
    for j in range(7):
        scores = [(_cos(z1[j].detach(), z2[k].detach()), k) for k in range(7) if k != j]
        assert chosen[j].item() == max(scores)[1]


def test_random_partners_are_other_samples() -> None:
    z1, z2 = _views(n=5)
    torch.manual_seed(3)
    draws = torch.stack([partners("random", z1, z2) for _ in range(50)])
    assert (draws != torch.arange(5)).all()
    assert len(set(draws[:, 0].tolist())) == 4  # every other sample gets picked


@pytest.mark.parametrize(
    ("schedule", "progress", "expected"),
    [
        ("constant", 0.7, 0.2),
        ("linear", 0.0, 0.2),
        ("linear", 0.5, 0.3),
        ("linear", 1.0, 0.4),
        ("cosine", 0.0, 0.2),
        ("cosine", 0.5, 0.3),
        ("cosine", 1.0, 0.4),
        ("cosine", 0.25, 0.4 + (0.2 - 0.4) * (1 + math.cos(math.pi / 4)) / 2),
        ("linear", 1.5, 0.4),
    ],
)
def test_schedule_values(schedule: str, progress: float, expected: float) -> None:
    assert scheduled_lambda(schedule, 0.2, 0.4, progress) == pytest.approx(expected)


def test_adaptive_lambda_is_bounded_and_detached() -> None:
    z1, z2 = _views(n=32, d=4)
    lam = adaptive_lambda(0.3, z1, z2)
    assert lam.shape == (32, 1)
    assert (lam >= 0).all() and (lam <= 0.3).all()
    assert not lam.requires_grad
    same = adaptive_lambda(0.3, z1, z1)
    assert torch.allclose(same, torch.zeros_like(same), atol=1e-12)


@pytest.mark.parametrize("strategy", ["roll", "random", "hardest"])
@pytest.mark.parametrize("schedule", ["constant", "linear", "adaptive"])
def test_mixed_block_matches_its_definition(strategy: str, schedule: str) -> None:
    """Block B column j = cos(z1_i, lam_j z2_j + (1 - lam_j) z2_p(j)), masked at (p(j), j); C symmetrically."""
    z1, z2 = _views()
    loss_fn = MixCSELoss(mix_lambda=0.2, mix_strategy=strategy, lambda_schedule=schedule, mix_lambda_end=0.4)
    loss_fn.progress = 0.5
    torch.manual_seed(9)
    logits = loss_fn.logits(z1, z2)
    torch.manual_seed(9)
    p2 = partners(strategy, z1, z2)
    p1 = partners(strategy, z2, z1)
    base = {"constant": 0.2, "linear": 0.3, "adaptive": 0.2}[schedule]
    n = 6
    for j in range(n):
        lam2 = base * (1 - _cos(z1[j].detach(), z2[p2[j]].detach())) / 2 if schedule == "adaptive" else base
        lam1 = base * (1 - _cos(z2[j].detach(), z1[p1[j]].detach())) / 2 if schedule == "adaptive" else base
        mixed2 = (lam2 * z2[j] + (1 - lam2) * z2[p2[j]]).detach()
        mixed1 = (lam1 * z1[j] + (1 - lam1) * z1[p1[j]]).detach()
        for i in range(n):
            b = 0.0 if i == p2[j] else _cos(z1[i].detach(), mixed2) / 0.05
            c = 0.0 if i == p1[j] else _cos(mixed1, z2[i].detach()) / 0.05
            assert logits[i, n + j].item() == pytest.approx(b, abs=1e-9)
            assert logits[j, 2 * n + i].item() == pytest.approx(c, abs=1e-9)


@pytest.mark.parametrize("strategy", ["roll", "random", "hardest"])
def test_no_gradient_through_mixed_vectors(strategy: str) -> None:
    z1, z2 = _views()
    logits = MixCSELoss(mix_lambda=0.2, mix_strategy=strategy, lambda_schedule="adaptive").logits(z1, z2)
    (grad_z2_from_b,) = torch.autograd.grad(logits[:, 6:12].sum(), z2, retain_graph=True, allow_unused=True)
    (grad_z1_from_c,) = torch.autograd.grad(logits[:, 12:].sum(), z1, retain_graph=True, allow_unused=True)
    assert grad_z2_from_b is None or torch.count_nonzero(grad_z2_from_b) == 0
    assert grad_z1_from_c is None or torch.count_nonzero(grad_z1_from_c) == 0


def test_anchor_side_only_drops_block_c() -> None:
    z1, z2 = _views()
    both = MixCSELoss(mix_lambda=0.2).logits(z1, z2)
    anchor_only = MixCSELoss(mix_lambda=0.2, mix_sides="anchor").logits(z1, z2)
    assert anchor_only.shape == (6, 12)
    assert torch.equal(anchor_only, both[:, :12])


def test_neg_inf_mask_follows_the_partners() -> None:
    z1, z2 = _views()
    logits = MixCSELoss(mix_lambda=0.2, mix_strategy="hardest", mask_value=-math.inf).logits(z1, z2)
    p2, p1 = partners("hardest", z1, z2), partners("hardest", z2, z1)
    expected = torch.zeros(6, 18, dtype=torch.bool)
    expected[p2, 6 + torch.arange(6)] = True
    expected[torch.arange(6), 12 + p1] = True
    assert torch.equal(torch.isinf(logits), expected)


def test_gradient_signal_matches_autograd() -> None:
    """grad_anchor_norm is |dLoss/dz1|; grad_mixed_share splits it into in-batch and mixed-column parts."""
    z1, z2 = _views()
    loss_fn = MixCSELoss(mix_lambda=0.2)
    logits = loss_fn.logits(z1, z2)
    signal = loss_fn.gradient_signal(logits, z1)
    loss = loss_fn.loss_from_logits(logits)
    (total,) = torch.autograd.grad(loss, z1, retain_graph=True)
    masked = logits.clone()
    masked[:, 6:] = masked[:, 6:].detach()  # the loss's gradient through the in-batch columns only
    (in_batch,) = torch.autograd.grad(loss_fn.loss_from_logits(masked), z1)
    mixed = total - in_batch
    assert signal["grad_anchor_norm"].item() == pytest.approx(total.norm().item(), rel=1e-10)
    share = mixed.norm() / (in_batch.norm() + mixed.norm())
    assert signal["grad_mixed_share"].item() == pytest.approx(share.item(), rel=1e-10)
    assert 0 < signal["grad_mixed_share"].item() < 1
    simcse = MixCSELoss(mix_lambda=None)
    assert simcse.gradient_signal(simcse.logits(z1, z2), z1)["grad_mixed_share"].item() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mix_strategy": "nearest"}, "mix_strategy"),
        ({"lambda_schedule": "step"}, "lambda_schedule"),
        ({"mix_sides": "positive"}, "mix_sides"),
        ({"lambda_schedule": "linear"}, "needs mix_lambda_end"),
        ({"lambda_schedule": "cosine", "mix_lambda_end": 1.5}, "mix_lambda_end"),
    ],
)
def test_invalid_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MixCSELoss(mix_lambda=0.2, **kwargs)
