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

from mixcse_hf.config import parse_run_args
from mixcse_hf.errors import TrainingDiverged, UsageError
from mixcse_hf.train import run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        summary = run(*parse_run_args(argv))
    except (UsageError, TrainingDiverged) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 3
    if summary.main_process:
        print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
