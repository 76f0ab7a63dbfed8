"""Train a sentence encoder with MixCSE.

    python run_mixcse.py CONFIG.yaml [--any_argument value ...]
    accelerate launch run_mixcse.py CONFIG.yaml [...]

Config values are defaults that command-line flags override; ``--help`` lists every argument. Input problems
print one line and exit with status 2; a loss that turns NaN/inf stops training with one line and status 3,
the last checkpoint intact (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import logging
import sys

from mixcse_hf.errors import run_cli
from mixcse_hf.training.config import parse_run_args
from mixcse_hf.training.job import run


def train(argv: list[str]) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    summary = run(*parse_run_args(argv))
    if summary.main_process:
        print(summary.table())


def main(argv: list[str] | None = None) -> int:
    return run_cli(train, argv)


if __name__ == "__main__":
    sys.exit(main())
