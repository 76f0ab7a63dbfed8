"""The package root: its public API, and imports that stay light (no matplotlib, no mteb)."""

from __future__ import annotations

import subprocess
import sys

import mixcse_hf
from mixcse_hf.loss import MixCSELoss as LegacyMixCSELoss


def test_public_api() -> None:
    for name in ("MixCSETrainer", "MixCSETrainingArguments", "MixCSELoss", "CachedLoss", "SentenceEncoder"):
        assert name in mixcse_hf.__all__
        assert getattr(mixcse_hf, name) is not None
    assert LegacyMixCSELoss is mixcse_hf.MixCSELoss


def test_imports_load_neither_matplotlib_nor_mteb() -> None:
    code = (
        "import sys, mixcse_hf, mixcse_hf.training.job, mixcse_hf.training.trainer; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'mteb'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.strip() == "[]"


def test_package_root_is_light_until_a_name_is_used() -> None:
    code = (
        "import sys, mixcse_hf, mixcse_hf.errors, mixcse_hf.training.options; "
        "light = not {'torch', 'transformers'} & {m.split('.')[0] for m in sys.modules}; "
        "mixcse_hf.MixCSELoss; print(light, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.split() == ["True", "True"]
