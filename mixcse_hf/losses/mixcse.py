"""The MixCSE contrastive loss (Zhang et al., AAAI 2022): unsupervised over two dropout views of a batch, or
supervised over (anchor, positive[, hard negative]) rows.

The embed step (all views in one forward pass, then pooling) lives in :mod:`mixcse_hf.models.batch`; this module
only turns embeddings into a loss, following the contract of :mod:`mixcse_hf.losses.base`. How mixed negatives
are formed is in :mod:`mixcse_hf.losses.mixing`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

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

MIXED_NEGATIVES = ("reference", "paired", "none")
MIX_SIDES = ("both", "anchor")
HARD_NEGATIVE_OPTIONS = ("hard_negative_weight", "mixed_hard_negative")
"""Options that act on a triplet's hard negative only."""
LOGGING_OPTIONS = ("log_gradient_signal",)
"""Options that change what is logged, not what is trained."""


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_j)`` for all i, j: (N, d) x (M, d) -> (N, M)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def duplicate_candidates(text_hashes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Which in-batch candidates repeat a row's text, from the (N, columns) text hashes (one column: the
    unsupervised sentence; two: anchor, positive; three: anchor, positive, hard negative).

    Returns ``(positives, hard_negatives)``, (N, N) booleans: ``positives[i, j]`` where positive j (j != i) has the
    text of anchor i or of its positive; ``hard_negatives[i, j]`` where hard negative j does (own one included), or
    ``None`` without hard negatives. One int64 equality of the row keys against all N x columns candidates."""
    n, columns = text_hashes.shape
    keys = text_hashes[:, :2]  # each row's anchor and positive texts (the one sentence, unsupervised)
    candidates = text_hashes[:, 1:] if columns > 1 else text_hashes  # positive[, hard negative] of each row
    kinds = candidates.size(1)
    same = (keys.unsqueeze(-1) == candidates.T.reshape(1, 1, kinds * n)).any(dim=1).view(n, kinds, n)
    own = torch.eye(n, dtype=torch.bool, device=text_hashes.device)
    return same[:, 0] & ~own, (same[:, 1] if kinds == 2 else None)


def _finite_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of the finite entries (masked logits are -inf)."""
    finite = torch.isfinite(values)
    return values.where(finite, 0).sum() / finite.sum().clamp(min=1)


def _mask(rows: torch.Tensor, columns: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean (N, N) mask, True at each (rows[k], columns[k])."""
    mask = torch.zeros(n, n, dtype=torch.bool, device=rows.device)
    mask[rows, columns] = True
    return mask


class MixCSELoss(nn.Module):
    """Cross-entropy of each anchor against its positive, in-batch negatives, hard negatives and mixed negatives.

    Inputs, all (N, d) with row i of each belonging to example i:

    - unsupervised, ``(z1, z2)``: the pooled embeddings of the same N sentences under two dropout masks;
    - pairs, ``(anchors, positives)``: the same computation, with the positive a different sentence;
    - triplets, ``(anchors, positives, hard_negatives)``: SimCSE's supervised loss, plus mixed negatives.

    Output: a scalar, the mean over anchors of the cross-entropy whose target for row i is column i
    (``cos(anchor_i, positive_i)``). Similarities are computed in at least float32. The logits, every block
    divided by ``temp`` (:meth:`column_blocks` gives their spans):

    - ``A = cos(a_i, p_j)`` (N x N), the in-batch negatives;
    - triplets: ``H = cos(a_i, h_j)`` (N x N) with ``hard_negative_weight`` added at (i, i), as SimCSE;
    - triplets with ``mixed_hard_negative``: ``M = cos(a_i, m_j)`` (N x N), ``m_j = lambda p_j + (1 - lambda) h_j``
      detached (each positive mixed with its own hard negative); nothing is masked: ``m_j`` for j != i mixes
      two negatives of anchor i;
    - the mixed negatives of ``mixed_negatives`` (below), built from anchors and positives.

    Args:
        temp: softmax temperature tau, finite and > 0; every logit is a cosine divided by it.
        mix_lambda: weight of the positive in a mixed negative, in (0, 1). ``None`` or 0 gives plain SimCSE.
            Keep it small (0.2 in the released recipe) so a mixed negative stays farther from the anchor than
            the positive.
        mask_value: value written at the masked entries of the mixed blocks. ``0.0`` is the reference
            behaviour (the entry still adds exp(0) to the denominator); ``float("-inf")`` removes it.
        mixed_negatives: ``"reference"`` reproduces ``cl_forward`` of MixCSE_AAAI2022's ``models_mix.py``:
            blocks ``B = cos(z1_i, mix(z2)_j)`` with entry (i, i-1) masked and ``C = cos(mix(z1)_i, z2_j)`` with
            entry (i, i+1) masked, where ``mix(z)_j = lambda z_j + (1 - lambda) z_{j+1}`` (indices mod N,
            detached): unsupervised, the logits are ``[A | B | C]`` (N x 3N). ``"paired"`` is the paper's
            description: one mixed negative per anchor, ``b_i = cos(z1_i, mix(z2)_i)`` (one column).
            ``"none"``: no mixed negatives from the roll (triplets with ``mixed_hard_negative`` only).
        mix_strategy: which negative is mixed with each positive (:data:`mixcse_hf.losses.mixing.MIX_STRATEGIES`);
            ``"roll"`` (the next sample) is the reference. The masked entries follow the choice: wherever a
            mixed vector holds ``1 - lambda`` of an anchor's own positive.
        lambda_schedule: :data:`mixcse_hf.losses.mixing.LAMBDA_SCHEDULES`; ``"constant"`` is the reference. The
            linear and cosine schedules move from ``mix_lambda`` to ``mix_lambda_end`` as :attr:`progress`
            goes from 0 to 1 (the trainer sets it every step).
        mix_lambda_end: the schedules' final lambda, in (0, 1).
        mix_sides: ``"both"`` (reference: blocks B and C) or ``"anchor"`` (block B only).
        hard_negative_weight: triplets: SimCSE's log-weight added to each anchor's own hard-negative logit (0
            by default, as SimCSE's recipe).
        mixed_hard_negative: triplets: add block M (needs ``mix_lambda``).
        log_gradient_signal: in training mode, also measure the gradient of the loss w.r.t. the anchors
            (:meth:`gradient_signal`) for :meth:`training_metrics`; two small backward passes through the loss.
        mask_duplicates: remove from the softmax (logit -inf) every in-batch candidate whose text is that of the
            row's anchor or positive, and every mixed negative that is mostly (``1 - lambda``) one; needs
            ``text_hashes`` (:meth:`duplicate_mask`). Off here, since it needs those hashes; the trainer, whose
            collators add them, turns it on by default.

    The full supervised layout is ``[A | H | M | B | C]``; with ``mix_lambda`` 0 it is SimCSE's ``[A | H]``.
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
        hard_negative_weight: float = 0.0,
        mixed_hard_negative: bool = False,
        log_gradient_signal: bool = False,
        mask_duplicates: bool = False,
    ) -> None:
        super().__init__()
        if not (math.isfinite(temp) and temp > 0):
            raise ValueError(f"temp must be a finite number > 0 (the softmax temperature, e.g. 0.05), got {temp}")
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
        if not math.isfinite(hard_negative_weight):
            raise ValueError(f"hard_negative_weight must be a finite log-weight, got {hard_negative_weight}")
        if mixed_hard_negative and not mix_lambda:
            raise ValueError("mixed_hard_negative mixes with weight mix_lambda: set mix_lambda in (0, 1), e.g. 0.3")
        if mix_lambda and mixed_negatives == "none" and not mixed_hard_negative:
            raise ValueError(
                "mixed_negatives 'none' without mixed_hard_negative mixes nothing; set mix_lambda 0 for SimCSE"
            )
        self.temp = temp
        self.mix_lambda = mix_lambda or None
        self.mask_value = mask_value
        self.mixed_negatives = mixed_negatives
        self.mix_strategy = mix_strategy
        self.lambda_schedule = lambda_schedule
        self.mix_lambda_end = mix_lambda_end
        self.mix_sides = mix_sides
        self.hard_negative_weight = hard_negative_weight
        self.mixed_hard_negative = mixed_hard_negative
        self.log_gradient_signal = log_gradient_signal
        self.mask_duplicates = mask_duplicates
        self.progress = 0.0
        """Fraction of training done, in [0, 1]: drives the linear and cosine lambda schedules."""
        self._metrics: dict[str, torch.Tensor] = {}
        self.last_duplicate_mask: torch.Tensor | None = None
        """The duplicate mask the last :meth:`logits` call applied (None without ``mask_duplicates``)."""

    def set_training_progress(self, progress: float) -> None:
        self.progress = progress

    def training_metrics(self) -> dict[str, torch.Tensor]:
        """The statistics recorded by the last training forward (then cleared)."""
        metrics, self._metrics = self._metrics, {}
        return metrics

    def current_lambda(self) -> float:
        """The (base) lambda at :attr:`progress`."""
        return scheduled_lambda(self.lambda_schedule, self.mix_lambda, self.mix_lambda_end, self.progress)

    def _lambda_for(self, anchors: torch.Tensor, negatives: torch.Tensor) -> float | torch.Tensor:
        mix_lambda: float | torch.Tensor = self.current_lambda()
        if self.lambda_schedule == "adaptive":
            mix_lambda = adaptive_lambda(mix_lambda, anchors, negatives)
        return mix_lambda

    def _mixed(self, anchors: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed negatives built from ``z`` for ``anchors`` (row j pairs with anchor j): (mixes, partners)."""
        partner = partners(self.mix_strategy, anchors, z)
        return mix(z, partner, self._lambda_for(anchors, z[partner])), partner

    def column_blocks(self, n: int, hard_negatives: bool = False) -> dict[str, slice]:
        """The logits' column blocks for a batch of ``n`` (with or without hard negatives), in order:
        ``in_batch`` (A), ``hard_negative`` (H), ``mixed_hard_negative`` (M), ``mixed_anchor_side`` (B) and
        ``mixed_positive_side`` (C), or ``mixed_paired`` (b); only those present."""
        widths = {"in_batch": n}
        if hard_negatives:
            widths["hard_negative"] = n
        if self.mix_lambda is not None:
            if hard_negatives and self.mixed_hard_negative:
                widths["mixed_hard_negative"] = n
            if self.mixed_negatives == "paired":
                widths["mixed_paired"] = 1
            elif self.mixed_negatives == "reference":
                widths["mixed_anchor_side"] = n
                if self.mix_sides == "both":
                    widths["mixed_positive_side"] = n
        spans, start = {}, 0
        for name, width in widths.items():
            spans[name] = slice(start, start + width)
            start += width
        return spans

    def logits(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        hard_negatives: torch.Tensor | None = None,
        text_hashes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The matrix of cosines / temp (plus the hard-negative weight) that the cross-entropy is over: N rows,
        the columns of :meth:`column_blocks`; with ``mask_duplicates``, the :meth:`duplicate_mask` of
        ``text_hashes`` set to -inf (kept in :attr:`last_duplicate_mask` for the step's metrics)."""
        logits, self.last_duplicate_mask = self._logits(anchors, positives, hard_negatives, text_hashes)
        return logits

    def _logits(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        hard_negatives: torch.Tensor | None,
        text_hashes: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, the duplicate mask applied to them or None)."""
        _check_views(anchors, positives, hard_negatives)
        if self.mask_duplicates:
            _check_hashes(text_hashes, anchors.size(0), hard_negatives is not None)
        if hard_negatives is None and (self.mixed_hard_negative or self.hard_negative_weight):
            raise ValueError(
                "mixed_hard_negative and hard_negative_weight need hard negatives: call loss(anchors, positives, "
                "hard_negatives), i.e. train on triplets"
            )
        dtype = torch.promote_types(anchors.dtype, torch.float32)
        z1, z2 = anchors.to(dtype), positives.to(dtype)
        n = z1.size(0)
        rows = torch.arange(n, device=z1.device)
        partner1 = partner2 = None
        blocks = [cosine_matrix(z1, z2)]
        if hard_negatives is not None:
            z3 = hard_negatives.to(dtype)
            blocks.append(cosine_matrix(z1, z3))
            if self.mix_lambda is not None and self.mixed_hard_negative:
                mix_lambda = self._lambda_for(z1, z3)
                blocks.append(cosine_matrix(z1, (mix_lambda * z2 + (1.0 - mix_lambda) * z3).detach()))
        if self.mix_lambda is not None and self.mixed_negatives != "none":
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
        logits = torch.cat(blocks, dim=1) / self.temp
        if hard_negatives is not None and self.hard_negative_weight:
            weights = torch.zeros_like(logits)
            weights[:, n : 2 * n].fill_diagonal_(self.hard_negative_weight)
            logits = logits + weights
        if not self.mask_duplicates:
            return logits, None
        mask = self.duplicate_mask(text_hashes, hard_negatives is not None, partner2, partner1)
        return logits.masked_fill(mask, -math.inf), mask

    def duplicate_mask(
        self,
        text_hashes: torch.Tensor,
        hard_negatives: bool = False,
        positive_partners: torch.Tensor | None = None,
        anchor_partners: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The logits masked as duplicates, (N, columns of :meth:`column_blocks`) boolean, from the (N, text
        columns) ``text_hashes``: rows with equal texts count as one sentence, so a logit is masked where the
        reference masks it for that sentence. A candidate is a duplicate for row i when its text is anchor i's or
        positive i's (:func:`duplicate_candidates`), the row's own positive (its target) excepted; a mixed vector
        counts as its ``1 - lambda`` part. Masked: in-batch positives (A) and hard negatives (H) that are
        duplicates; mixed negatives whose ``1 - lambda`` part is one (M: ``h_j``; B: ``z2_{p(j)}``; paired:
        ``z2_{p(i)}``); in C, whose rows ``mix(z1)_i`` are mostly anchor ``q(i)``, the duplicates of row ``q(i)``.
        A mixed negative holding ``lambda`` of a duplicate is kept, as the reference keeps the one holding
        ``lambda`` of the row's own positive. ``positive_partners``: the mixing partners ``p(j)`` of the positives
        (B, paired); ``anchor_partners``: ``q(i)`` of the anchors (C)."""
        positive, hard = duplicate_candidates(text_hashes)
        n = positive.size(0)
        parts = {"in_batch": positive}
        if hard is not None:
            parts.update(hard_negative=hard, mixed_hard_negative=hard)
        if positive_partners is not None:
            parts["mixed_anchor_side"] = positive[:, positive_partners]
            parts["mixed_paired"] = positive[torch.arange(n, device=positive.device), positive_partners].unsqueeze(1)
        if anchor_partners is not None:
            parts["mixed_positive_side"] = positive[anchor_partners]
        spans = self.column_blocks(n, hard_negatives)
        return torch.cat([parts[name] for name in spans], dim=1)

    @staticmethod
    def loss_from_logits(logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy with target column i for row i."""
        targets = torch.arange(logits.size(0), device=logits.device)
        return F.cross_entropy(logits, targets)

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        hard_negatives: torch.Tensor | None = None,
        text_hashes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = self.logits(anchors, positives, hard_negatives, text_hashes)
        mask, self.last_duplicate_mask = self.last_duplicate_mask, None
        loss = self.loss_from_logits(logits)
        if self.training and torch.is_grad_enabled():
            triplets = hard_negatives is not None
            self._metrics = self.similarity_stats(logits, triplets)
            if mask is not None:
                self._metrics["masked_duplicates"] = mask.sum().to(logits.dtype)
            if self.log_gradient_signal and anchors.requires_grad:
                self._metrics.update(self.gradient_signal(logits, anchors, triplets))
        return loss

    def similarity_stats(self, logits: torch.Tensor, hard_negatives: bool = False) -> dict[str, torch.Tensor]:
        """Mean cosines read off ``logits`` (no extra forward): positive pairs, in-batch negatives and, where
        present, each anchor's own hard negative ``cos(a_i, h_i)``, own mixed negative ``cos(a_i, mix(p)_i)`` and
        own mixed hard negative ``cos(a_i, m_i)``. ``hard_negatives``: whether ``logits`` came from triplets.
        Returns 0-d detached tensors. With ``mask_duplicates``, means over the entries not masked."""
        n = logits.size(0)
        cosines = logits.detach() * self.temp
        blocks = {name: cosines[:, span] for name, span in self.column_blocks(n, hard_negatives).items()}
        positive = blocks["in_batch"].diagonal()
        mean = _finite_mean if self.mask_duplicates else torch.mean
        if self.mask_duplicates:
            off_diagonal = ~torch.eye(n, dtype=torch.bool, device=cosines.device)
            negative = _finite_mean(blocks["in_batch"][off_diagonal])
        else:
            negative = (blocks["in_batch"].sum() - positive.sum()) / (n * (n - 1))
        stats = {"sim_positive": positive.mean(), "sim_negative": negative}
        if "hard_negative" in blocks:
            own_hard = blocks["hard_negative"].diagonal() - self.hard_negative_weight * self.temp
            stats["sim_hard_negative"] = mean(own_hard)
        if "mixed_hard_negative" in blocks:
            stats["sim_mixed_hard_negative"] = mean(blocks["mixed_hard_negative"].diagonal())
        if "mixed_paired" in blocks:
            stats["sim_mixed_negative"] = mean(blocks["mixed_paired"])
        elif "mixed_anchor_side" in blocks:
            stats["sim_mixed_negative"] = mean(blocks["mixed_anchor_side"].diagonal())
        return stats

    def gradient_signal(
        self, logits: torch.Tensor, anchors: torch.Tensor, hard_negatives: bool = False
    ) -> dict[str, torch.Tensor]:
        """The paper's quantity: the gradient of the loss w.r.t. the anchor embeddings ``anchors`` (the ones the
        logits were computed from), its Frobenius norm and the share of it coming from the mixed columns,
        ``|g_mixed| / (|g_other| + |g_mixed|)`` (0 for SimCSE; real hard negatives count as other). Needs the
        graph from ``anchors`` to ``logits``; leaves it intact. Returns 0-d detached tensors."""
        n = logits.size(0)
        with torch.no_grad():
            grad_logits = logits.softmax(dim=-1)
            grad_logits[torch.arange(n), torch.arange(n)] -= 1
            grad_logits /= n  # d mean-cross-entropy / d logits
        (total,) = torch.autograd.grad(logits, anchors, grad_outputs=grad_logits, retain_graph=True)
        mixed = torch.zeros_like(total)
        first_mixed = 2 * n if hard_negatives else n  # mixed blocks come last (column_blocks)
        if logits.size(1) > first_mixed:
            (mixed,) = torch.autograd.grad(
                logits[:, first_mixed:], anchors, grad_outputs=grad_logits[:, first_mixed:], retain_graph=True
            )
        other_norm, mixed_norm = (total - mixed).norm(), mixed.norm()
        return {"grad_anchor_norm": total.norm(), "grad_mixed_share": mixed_norm / (other_norm + mixed_norm)}

    def options(self) -> dict[str, Any]:
        """The constructor's arguments (each stored under its own name): ``MixCSELoss(**loss.options())`` builds
        the same loss."""
        return {name: getattr(self, name) for name in inspect.signature(MixCSELoss).parameters}

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options().items())


def _check_views(anchors: torch.Tensor, positives: torch.Tensor, hard_negatives: torch.Tensor | None) -> None:
    views = [anchors, positives] + ([hard_negatives] if hard_negatives is not None else [])
    if anchors.dim() != 2 or any(view.shape != anchors.shape for view in views):
        shapes = ", ".join(str(tuple(view.shape)) for view in views)
        raise ValueError(f"the loss's inputs must all be (N, d) tensors of the same shape, got {shapes}")
    if anchors.size(0) < 2:
        raise ValueError(
            f"a contrastive batch needs N >= 2 rows (in-batch negatives), got N={anchors.size(0)}; "
            "raise the per-device batch size"
        )


def _check_hashes(text_hashes: torch.Tensor | None, n: int, hard_negatives: bool) -> None:
    if text_hashes is None:
        raise ValueError(
            "mask_duplicates (on by default in training) compares the texts' hashes, and this batch has none: "
            "the training data MixCSETrainer builds carries them; a batch of your own needs each column's "
            "'text_hash' (mixcse_hf.models.batch.text_hash), a direct call loss(*embeddings, text_hashes=(N, "
            "columns) int64); or set mask_duplicates false"
        )
    allowed = (3,) if hard_negatives else (1, 2)
    if text_hashes.dim() != 2 or text_hashes.size(0) != n or text_hashes.size(1) not in allowed:
        raise ValueError(
            f"text_hashes must be (N={n}, {' or '.join(map(str, allowed))}) (one column per text column), got "
            f"{tuple(text_hashes.shape)}"
        )
