"""``MixCSELoss(mask_duplicates=True)`` against an independent loop that builds each row's logits and drops the
columns of duplicates; and, with no duplicates or the option off, bit-identical to the loss without hashes.

A candidate is a duplicate for row i when its text is anchor i's or positive i's (the row's own positive, its
target, excepted). Rows with equal texts count as one sentence: a mixed vector counts as its ``1 - lambda`` part,
so a mixed negative is dropped when that part is a duplicate (the reference masks it when that part is the row's own
positive) and kept when only its ``lambda`` part is (as the reference keeps the mix holding ``lambda`` of the own
positive). Nothing from ``mixcse_hf`` but :func:`text_hash` is used to build the expectations.
"""

from __future__ import annotations

import math

import pytest
import torch

from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.batch import text_hash

TEMP, LAM, WEIGHT = 0.05, 0.2, 0.3
ATOL = 1e-10


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a, b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


def _views(n: int, count: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 6, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(count)]


def _hashes(*columns: list[str]) -> torch.Tensor:
    return torch.tensor([[text_hash(text) for text in row] for row in zip(*columns, strict=True)], dtype=torch.int64)


def ref_rows(
    a: torch.Tensor,
    p: torch.Tensor,
    h: torch.Tensor | None,
    texts: list[tuple[str, ...]],
    mixed_negatives: str,
    mixed_hard_negative: bool = False,
) -> list[tuple[list[torch.Tensor], int]]:
    """Each row's kept logits, in the layout's column order ``[A | H | M | B | C]`` or ``[A | H | M | b]``, and
    the position of its target (A's column i) among them. ``texts[i]``: row i's (anchor, positive[, hard
    negative]) texts, or its one sentence."""
    n = a.shape[0]
    positive_text = [row[1] if len(row) > 1 else row[0] for row in texts]

    def dup(i: int, j: int) -> bool:  # positive j repeats row i's anchor or positive (own positive excepted)
        return j != i and positive_text[j] in texts[i][:2]

    def hard_dup(i: int, j: int) -> bool:
        return texts[j][2] in texts[i][:2]

    rows = []
    for i in range(n):
        row = [_cos(a[i], p[j]) / TEMP for j in range(n) if not dup(i, j)]
        target = sum(not dup(i, j) for j in range(i))
        if h is not None:
            row += [_cos(a[i], h[j]) / TEMP + (WEIGHT if j == i else 0.0) for j in range(n) if not hard_dup(i, j)]
            if mixed_hard_negative:
                for j in range(n):
                    if not hard_dup(i, j):  # mostly h_j
                        row.append(_cos(a[i], (LAM * p[j] + (1 - LAM) * h[j]).detach()) / TEMP)
        if mixed_negatives == "reference":
            for j in range(n):  # B: mix of p_j and p_{j+1}; (i, i-1) holds 1 - lambda of p_i: 0 (reference mask)
                if dup(i, (j + 1) % n):  # mostly a duplicate of row i's positive
                    continue
                mixed = (LAM * p[j] + (1 - LAM) * p[(j + 1) % n]).detach()
                row.append(_cos(a[i], mixed) / TEMP * (0.0 if j == (i - 1) % n else 1.0))
            mixed_anchor = (LAM * a[i] + (1 - LAM) * a[(i + 1) % n]).detach()
            for j in range(n):  # C: mixed anchor (mostly a_{i+1}) against p_j, (i, i+1) masked to 0
                if not dup((i + 1) % n, j):
                    row.append(_cos(mixed_anchor, p[j]) / TEMP * (0.0 if j == (i + 1) % n else 1.0))
        elif mixed_negatives == "paired" and not dup(i, (i + 1) % n):
            row.append(_cos(a[i], (LAM * p[i] + (1 - LAM) * p[(i + 1) % n]).detach()) / TEMP)
        rows.append((row, target))
    return rows


def ref_loss(rows: list[tuple[list[torch.Tensor], int]]) -> torch.Tensor:
    """Mean over rows of the cross-entropy over the kept logits with the row's target."""
    return sum(torch.logsumexp(torch.stack(row), 0) - row[target] for row, target in rows) / len(rows)


UNSUPERVISED = ["a", "b", "a", "c", "b", "d"]
PAIRS = [("a", "x"), ("b", "y"), ("c", "x"), ("x", "z"), ("d", "b"), ("e", "w")]
"""Row 2's positive repeats row 0's; row 3's anchor is row 0's positive; row 4's positive is row 1's anchor."""
TRIPLETS = [("a", "x", "q"), ("b", "y", "x"), ("c", "x", "r"), ("x", "z", "a"), ("d", "b", "s"), ("e", "w", "w")]
"""As PAIRS, plus hard negatives that repeat another row's positive (1), anchor (3) and their own positive (5)."""


def _check(loss_fn: MixCSELoss, views: list[torch.Tensor], hashes: torch.Tensor, expected: list[list]) -> None:
    logits = loss_fn.logits(*views, text_hashes=hashes)
    for i, (row, _) in enumerate(expected):
        kept = logits[i][torch.isfinite(logits[i])]
        assert kept.shape[0] == len(row), f"row {i}: {kept.shape[0]} columns kept, expected {len(row)}"
        assert torch.allclose(kept, torch.stack(row), atol=ATOL), f"row {i}"
    loss = loss_fn(*views, text_hashes=hashes)
    expected_loss = ref_loss(expected)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=ATOL)
    got = torch.autograd.grad(loss, views[0], retain_graph=True)[0]
    want = torch.autograd.grad(expected_loss, views[0])[0]
    assert torch.allclose(got, want, atol=ATOL)
    masked = logits.size(1) * len(expected) - sum(len(row) for row, _ in expected)
    assert loss_fn.training_metrics()["masked_duplicates"].item() == masked
    assert masked > 0


@pytest.mark.parametrize("mixed_negatives", ["reference", "paired"])
def test_unsupervised_matches_loop(mixed_negatives: str) -> None:
    z1, z2 = _views(len(UNSUPERVISED), 2, 0)
    loss_fn = MixCSELoss(TEMP, LAM, mixed_negatives=mixed_negatives, mask_duplicates=True)
    texts = [(text,) for text in UNSUPERVISED]
    _check(loss_fn, [z1, z2], _hashes(UNSUPERVISED), ref_rows(z1, z2, None, texts, mixed_negatives))


@pytest.mark.parametrize("mixed_negatives", ["reference", "paired"])
def test_pairs_match_loop(mixed_negatives: str) -> None:
    a, p = _views(len(PAIRS), 2, 1)
    loss_fn = MixCSELoss(TEMP, LAM, mixed_negatives=mixed_negatives, mask_duplicates=True)
    _check(loss_fn, [a, p], _hashes(*zip(*PAIRS, strict=True)), ref_rows(a, p, None, PAIRS, mixed_negatives))


@pytest.mark.parametrize("mixed_negatives", ["reference", "paired", "none"])
def test_triplets_with_mixed_hard_negatives_match_loop(mixed_negatives: str) -> None:
    a, p, h = _views(len(TRIPLETS), 3, 2)
    loss_fn = MixCSELoss(
        TEMP,
        LAM,
        mixed_negatives=mixed_negatives,
        hard_negative_weight=WEIGHT,
        mixed_hard_negative=True,
        mask_duplicates=True,
    )
    expected = ref_rows(a, p, h, TRIPLETS, mixed_negatives, mixed_hard_negative=True)
    _check(loss_fn, [a, p, h], _hashes(*zip(*TRIPLETS, strict=True)), expected)


def test_texts_are_compared_after_nfkc_and_strip() -> None:
    assert text_hash("  the ﬁle\n") == text_hash("the file")
    assert text_hash("The file") != text_hash("the file")
    z1, z2 = _views(3, 2, 3)
    logits = MixCSELoss(TEMP, LAM, mask_duplicates=True).logits(z1, z2, text_hashes=_hashes(["a ", "\uff41", "b"]))
    assert math.isinf(logits[0, 1].item()) and math.isinf(logits[1, 0].item())


LAYOUTS = {
    "unsupervised": (2, {}),
    "pairs": (2, {"mixed_negatives": "paired"}),
    "triplets": (3, {"mixed_hard_negative": True, "hard_negative_weight": WEIGHT}),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_no_duplicates_and_option_off_are_bit_identical(layout: str) -> None:
    """Unique texts with mask_duplicates, and hashes with duplicates but the option off: torch.equal to the loss
    of today (no hashes) on the loss and the gradients."""
    count, options = LAYOUTS[layout]
    columns = 1 if layout == "unsupervised" else count
    unique = _hashes(*[[f"{column}-{row}" for row in range(8)] for column in range(columns)])
    duplicated = _hashes(*[["same"] * 8 for _ in range(columns)])
    baseline_views = _views(8, count, 4)
    baseline = MixCSELoss(TEMP, LAM, **options)(*baseline_views)
    baseline_grads = torch.autograd.grad(baseline, baseline_views)
    for mask_duplicates, hashes in ((True, unique), (False, duplicated)):
        views = _views(8, count, 4)
        loss_fn = MixCSELoss(TEMP, LAM, mask_duplicates=mask_duplicates, **options)
        loss = loss_fn(*views, text_hashes=hashes)
        assert torch.equal(loss, baseline)
        for grad, expected in zip(torch.autograd.grad(loss, views), baseline_grads, strict=True):
            assert torch.equal(grad, expected)
        metrics = loss_fn.training_metrics()
        assert ("masked_duplicates" in metrics) == mask_duplicates
        if mask_duplicates:
            assert metrics["masked_duplicates"].item() == 0


def test_mask_duplicates_needs_hashes() -> None:
    z1, z2 = _views(4, 2, 5)
    with pytest.raises(ValueError, match="text_hashes"):
        MixCSELoss(mask_duplicates=True)(z1, z2)
    with pytest.raises(ValueError, match=r"text_hashes must be \(N=4, 1 or 2\)"):
        MixCSELoss(mask_duplicates=True)(z1, z2, text_hashes=torch.zeros(4, 3, dtype=torch.int64))
