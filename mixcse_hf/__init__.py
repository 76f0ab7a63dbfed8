"""mixcse_hf: MixCSE sentence-embedding training on the current HuggingFace stack."""

from __future__ import annotations

from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.encoder import SentenceEncoder

__version__ = "0.1.0"
__all__ = ["MixCSELoss", "SentenceEncoder", "__version__"]
