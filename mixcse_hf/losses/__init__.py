"""Losses: turn the embeddings of a batch's text columns into a training loss (see :mod:`mixcse_hf.losses.base`)."""

from __future__ import annotations

from mixcse_hf.losses.mixcse import MixCSELoss

__all__ = ["MixCSELoss"]
