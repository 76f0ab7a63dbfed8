"""Kept so that ``from mixcse_hf.loss import MixCSELoss`` (the documented import before the losses package)
still works; the loss lives in :mod:`mixcse_hf.losses.mixcse`."""

from __future__ import annotations

from mixcse_hf.losses.mixcse import MixCSELoss

__all__ = ["MixCSELoss"]
