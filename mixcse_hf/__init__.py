"""mixcse_hf: MixCSE sentence-embedding training on the current HuggingFace stack.

The public API: the trainer and its arguments, the loss, the inference wrapper and the evaluators. Code is grouped
by role: ``losses/``, ``models/``, ``training/``, ``evaluation/``, ``hub/``, and the console commands in ``cli/``.

The names are imported on first use (PEP 562), so that light entry points (``run_mixcse.py --help``) and
submodules do not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"
_PUBLIC_API = {
    "CachedLoss": "mixcse_hf.losses.cached",
    "MixCSELoss": "mixcse_hf.losses.mixcse",
    "MixCSETrainer": "mixcse_hf.training.trainer",
    "MixCSETrainingArguments": "mixcse_hf.training.training_args",
    "STSEvaluator": "mixcse_hf.evaluation.evaluators",
    "SentenceEncoder": "mixcse_hf.models.encoder",
}
__all__ = [*sorted(_PUBLIC_API), "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC_API:
        raise AttributeError(f"module 'mixcse_hf' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC_API[name]), name)


def __dir__() -> list[str]:
    return __all__
