"""Train a sentence encoder with MixCSE: the script entry point of ``mixcse-train`` (:mod:`mixcse_hf.cli.train`).

python run_mixcse.py CONFIG.yaml [--any_argument value ...]
accelerate launch run_mixcse.py CONFIG.yaml [...]
"""

from __future__ import annotations

import sys

from mixcse_hf.cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
