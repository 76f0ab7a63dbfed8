"""Supervised ``MixCSELoss(anchors, positives, hard_negatives)`` against an independent loop implementation.

With ``mix_lambda`` 0 the reference is SimCSE's supervised ``cl_forward`` (``[cos(a_i, p_j) | cos(a_i, h_j)] / tau``,
``hard_negative_weight`` added at each anchor's own hard negative); with mixing, the extra blocks are written out
entry by entry. Nothing from ``mixcse_hf`` is used to build the expectations.
"""

from __future__ import annotations

import math

import pytest
import torch

from mixcse_hf.losses.mixcse import MixCSELoss

ATOL = 1e-10
NS = [2, 3, 8]


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a, b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


def _triplets(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded float64 leaves with rows of very different norms."""
    g = torch.Generator().manual_seed(seed)
    views = []
    for _ in range(3):
        z = torch.randn(n, d, generator=g, dtype=torch.float64)
        views.append((z * (0.3 + 5.0 * torch.rand(n, 1, generator=g, dtype=torch.float64))).requires_grad_(True))
    return views[0], views[1], views[2]


def ref_logits(
    a: torch.Tensor,
    p: torch.Tensor,
    h: torch.Tensor,
    temp: float,
    weight: float = 0.0,
    lam: float | None = None,
    mixed_hard_negative: bool = False,
    roll: str = "reference",
) -> torch.Tensor:
    """Row by row: ``[A | H | M | B | C]`` (only the blocks asked for), as the loss documents them."""
    n = a.shape[0]
    rows = []
    for i in range(n):
        row = [_cos(a[i], p[j]) / temp for j in range(n)]
        row += [_cos(a[i], h[j]) / temp + (weight if j == i else 0.0) for j in range(n)]
        if lam and mixed_hard_negative:
            row += [_cos(a[i], (lam * p[j] + (1 - lam) * h[j]).detach()) / temp for j in range(n)]
        if lam and roll == "reference":
            for j in range(n):  # B: anchor vs mixed positives, (i, i-1) masked to 0
                mixed = (lam * p[j] + (1 - lam) * p[(j + 1) % n]).detach()
                row.append(_cos(a[i], mixed) / temp * (0.0 if j == (i - 1) % n else 1.0))
            mixed_anchor = (lam * a[i] + (1 - lam) * a[(i + 1) % n]).detach()
            for j in range(n):  # C: mixed anchor vs positives, (i, i+1) masked to 0
                row.append(_cos(mixed_anchor, p[j]) / temp * (0.0 if j == (i + 1) % n else 1.0))
        if lam and roll == "paired":
            row.append(_cos(a[i], (lam * p[i] + (1 - lam) * p[(i + 1) % n]).detach()) / temp)
        rows.append(torch.stack(row))
    return torch.stack(rows)


def ref_loss(logits: torch.Tensor) -> torch.Tensor:
    n = logits.shape[0]
    return torch.stack([torch.logsumexp(logits[i], dim=0) - logits[i, i] for i in range(n)]).sum() / n


def _grads(out: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(out, inputs, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(z) if g is None else g for z, g in zip(inputs, grads, strict=True)]


def _check(loss_fn: MixCSELoss, inputs: tuple[torch.Tensor, ...], expected_logits: torch.Tensor) -> None:
    loss = loss_fn(*inputs)
    expected = ref_loss(expected_logits)
    assert loss.dtype == torch.float64 and loss.dim() == 0
    torch.testing.assert_close(loss, expected, rtol=0.0, atol=ATOL)
    for actual, wanted in zip(_grads(loss, inputs), _grads(expected, inputs), strict=True):
        torch.testing.assert_close(actual, wanted, rtol=0.0, atol=ATOL)
    torch.testing.assert_close(loss_fn.logits(*inputs).detach(), expected_logits.detach(), rtol=0.0, atol=ATOL)


@pytest.mark.parametrize("weight", [0.0, 0.7, -1.5])
@pytest.mark.parametrize("temp", [0.05, 1.0])
@pytest.mark.parametrize("lam", [None, 0])
@pytest.mark.parametrize("n", NS)
def test_lambda_zero_is_simcse_supervised(n: int, lam: float | None, temp: float, weight: float) -> None:
    """mix_lambda None/0: SimCSE's supervised logits [A | H] with the hard-negative log-weight; values and the
    gradients of all three inputs to 1e-10 in float64."""
    inputs = _triplets(n, 6, seed=10 * n + int(10 * weight))
    loss_fn = MixCSELoss(temp=temp, mix_lambda=lam, hard_negative_weight=weight)
    assert loss_fn.logits(*inputs).shape == (n, 2 * n)
    _check(loss_fn, inputs, ref_logits(*inputs, temp, weight))


@pytest.mark.parametrize(
    ("roll", "mixed_hard_negative"),
    [("reference", False), ("reference", True), ("paired", False), ("paired", True), ("none", True)],
)
@pytest.mark.parametrize("n", NS)
def test_mixed_triplets_match_loop(n: int, roll: str, mixed_hard_negative: bool) -> None:
    """Every supervised layout with lambda 0.3: [A | H | M? | B C or b or nothing] (roll "none" without M mixes
    nothing and is refused)."""
    inputs = _triplets(n, 7, seed=100 + n)
    loss_fn = MixCSELoss(
        temp=0.05,
        mix_lambda=0.3,
        mixed_negatives=roll,
        mixed_hard_negative=mixed_hard_negative,
        hard_negative_weight=0.2,
    )
    _check(loss_fn, inputs, ref_logits(*inputs, 0.05, 0.2, 0.3, mixed_hard_negative, roll))


def test_pairs_are_the_unsupervised_computation() -> None:
    """(anchors, positives) without hard negatives: the same logits as two dropout views."""
    a, p, _ = _triplets(5, 4, seed=3)
    loss_fn = MixCSELoss(temp=0.05, mix_lambda=0.2)
    assert loss_fn.logits(a, p).shape == (5, 15)
    torch.testing.assert_close(loss_fn(a, p), ref_loss(_pair_reference(a, p)), rtol=0.0, atol=ATOL)


def _pair_reference(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """[A | B | C] of the pair: the triplet reference with the H block removed."""
    n = a.shape[0]
    full = ref_logits(a, p, p, 0.05, lam=0.2)
    return torch.cat([full[:, :n], full[:, 2 * n :]], dim=1)


def test_no_gradient_through_the_mixed_hard_negatives() -> None:
    """Block M moves the anchors only: the mixes of positives and hard negatives are detached."""
    n = 4
    a, p, h = _triplets(n, 5, seed=9)
    loss_fn = MixCSELoss(mix_lambda=0.3, mixed_negatives="none", mixed_hard_negative=True)
    block = loss_fn.logits(a, p, h)[:, loss_fn.column_blocks(n, hard_negatives=True)["mixed_hard_negative"]]
    grad_a, grad_p, grad_h = _grads(block.sum(), (a, p, h))
    assert grad_a.abs().max() > 0
    assert torch.count_nonzero(grad_p) == 0 and torch.count_nonzero(grad_h) == 0


def test_column_blocks_layout() -> None:
    spans = MixCSELoss(mix_lambda=0.3, mixed_hard_negative=True).column_blocks(4, hard_negatives=True)
    assert [(name, span.start, span.stop) for name, span in spans.items()] == [
        ("in_batch", 0, 4),
        ("hard_negative", 4, 8),
        ("mixed_hard_negative", 8, 12),
        ("mixed_anchor_side", 12, 16),
        ("mixed_positive_side", 16, 20),
    ]
    assert list(MixCSELoss(mix_lambda=0).column_blocks(4, hard_negatives=True)) == ["in_batch", "hard_negative"]


def test_similarity_stats_read_the_triplet_cosines() -> None:
    """The logged cosines are the anchors' own hard and mixed hard negatives, the log-weight removed."""
    n = 6
    a, p, h = _triplets(n, 5, seed=21)
    loss_fn = MixCSELoss(temp=0.05, mix_lambda=0.3, mixed_hard_negative=True, hard_negative_weight=1.0)
    loss_fn(a, p, h)
    stats = loss_fn.training_metrics()
    own_hard = torch.stack([_cos(a[i], h[i]) for i in range(n)]).mean()
    own_mixed = torch.stack([_cos(a[i], 0.3 * p[i] + 0.7 * h[i]) for i in range(n)]).mean()
    positive = torch.stack([_cos(a[i], p[i]) for i in range(n)]).mean()
    torch.testing.assert_close(stats["sim_hard_negative"], own_hard.detach(), rtol=0.0, atol=1e-12)
    torch.testing.assert_close(stats["sim_mixed_hard_negative"], own_mixed.detach(), rtol=0.0, atol=1e-12)
    torch.testing.assert_close(stats["sim_positive"], positive.detach(), rtol=0.0, atol=1e-12)


def test_gradient_signal_counts_real_hard_negatives_as_other() -> None:
    """SimCSE-sup has no mixed share; mixing the hard negatives gives one."""
    a, p, h = _triplets(6, 5, seed=5)
    simcse = MixCSELoss(mix_lambda=0)
    assert simcse.gradient_signal(simcse.logits(a, p, h), a, hard_negatives=True)["grad_mixed_share"].item() == 0
    mixcse = MixCSELoss(mix_lambda=0.3, mixed_negatives="none", mixed_hard_negative=True)
    assert mixcse.gradient_signal(mixcse.logits(a, p, h), a, hard_negatives=True)["grad_mixed_share"].item() > 0


@pytest.mark.parametrize(
    "shapes", [((4, 5), (4, 5), (3, 5)), ((4, 5), (4, 5), (4, 6)), ((4, 5), (4, 5), (20,)), ((1, 5),) * 3]
)
def test_bad_triplet_shapes(shapes: tuple[tuple[int, ...], ...]) -> None:
    with pytest.raises(ValueError, match=r"N >= 2|same shape"):
        MixCSELoss()(*(torch.randn(*shape) for shape in shapes))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mix_lambda": 0, "mixed_hard_negative": True}, "mixed_hard_negative"),
        ({"mix_lambda": 0.3, "mixed_negatives": "none"}, "mixes nothing"),
        ({"hard_negative_weight": math.inf}, "hard_negative_weight"),
        ({"hard_negative_weight": math.nan}, "hard_negative_weight"),
    ],
)
def test_configurations_that_mix_nothing_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MixCSELoss(**options)


@pytest.mark.parametrize("options", [{"hard_negative_weight": 0.5}, {"mix_lambda": 0.3, "mixed_hard_negative": True}])
def test_triplet_options_on_pairs_are_refused(options: dict) -> None:
    a, p, _ = _triplets(4, 5, seed=1)
    with pytest.raises(ValueError, match="need hard negatives"):
        MixCSELoss(**options)(a, p)
