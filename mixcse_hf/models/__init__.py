"""Models: the pooler registry and the inference wrapper :class:`SentenceEncoder`."""

from __future__ import annotations

from mixcse_hf.models.encoder import SentenceEncoder

__all__ = ["SentenceEncoder"]
