"""Train a sentence encoder with MixCSE.

    python run_mixcse.py CONFIG.yaml [--any_argument value ...]
    accelerate launch run_mixcse.py CONFIG.yaml [...]

(also ``mixcse-train`` and ``python -m mixcse_hf.cli.train``). Config values are defaults that command-line flags
override; ``--help`` lists our arguments by group, ``--help_all`` the Trainer's too. Input problems print one line
and exit with status 2; a loss that turns NaN/inf stops training with one line and status 3, the last checkpoint
intact (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import logging
import sys

from mixcse_hf.errors import run_cli
from mixcse_hf.training.help import help_request


def train(argv: list[str]) -> None:
    if (text := help_request(argv)) is not None:
        print(text, end="")
        return
    from mixcse_hf.training.config import parse_run_args

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    arguments = parse_run_args(argv)  # the checks that need no library come before torch and transformers load
    from mixcse_hf.training.job import run  # imported once the arguments are valid: it takes seconds

    summary = run(*arguments)
    if summary.main_process:
        print(summary.table())


def main(argv: list[str] | None = None) -> int:
    return run_cli(train, argv)


if __name__ == "__main__":
    sys.exit(main())
