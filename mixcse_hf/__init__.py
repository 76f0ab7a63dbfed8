"""mixcse_hf: MixCSE sentence-embedding training on the current HuggingFace stack.

The public API: the trainer and its arguments, the loss, the inference wrapper and the evaluators. Code is grouped
by role: ``losses/``, ``models/``, ``training/``, ``evaluation/``, ``hub/`` (and ``plot`` for figures).
"""

from __future__ import annotations

from mixcse_hf.evaluation.evaluators import STSEvaluator
from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training.arguments import MixCSETrainingArguments
from mixcse_hf.training.trainer import MixCSETrainer

__version__ = "0.1.0"
__all__ = [
    "CachedLoss",
    "MixCSELoss",
    "MixCSETrainer",
    "MixCSETrainingArguments",
    "STSEvaluator",
    "SentenceEncoder",
    "__version__",
]
