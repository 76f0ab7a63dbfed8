"""Training curves from a run's ``trainer_state.json``: every evaluation metric over steps (STS-B dev Spearman by
default) from the start model at step 0 to the end, with the kept best checkpoint starred; the training loss
over steps; and alignment vs uniformity per evaluation when measured (the SimCSE paper's Figure 2 view).

    mixcse-plot OUTPUT_DIR [--output FILE.png]
    mixcse-plot RUN_A RUN_B ... --gradient_signal --output FILE.png

(``python -m mixcse_hf.cli.plot`` is the same command.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from transformers.trainer_utils import get_last_checkpoint

from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.training.curves import PLOT_NAME, plot_gradient_signal, plot_training
from mixcse_hf.training.history import RESULTS_NAME

STATE_FILE = "trainer_state.json"


def find_trainer_state(run_dir: str) -> str:
    """``run_dir/trainer_state.json``, else the last checkpoint's."""
    candidates = [os.path.join(run_dir, STATE_FILE)]
    if os.path.isdir(run_dir) and (last := get_last_checkpoint(run_dir)):
        candidates.append(os.path.join(last, STATE_FILE))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise UsageError(f"no {STATE_FILE} in {run_dir!r} or its checkpoints; pass a run's output_dir")


def load_state(run_dir: str) -> dict:
    """The content of the run's ``trainer_state.json`` (see :func:`find_trainer_state`)."""
    with open(find_trainer_state(run_dir), encoding="utf-8") as handle:
        return json.load(handle)


def load_log_history(run_dir: str) -> list[dict]:
    """The run's ``log_history`` (see :func:`load_state`)."""
    return load_state(run_dir)["log_history"]


def load_start_metrics(run_dir: str) -> dict[str, float] | None:
    """The start model's metrics from ``run_dir/sts_results.json`` (key ``start_metrics``); None without them."""
    path = os.path.join(run_dir, RESULTS_NAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("start_metrics")


def plot_run(run_dir: str, output_png: str | None = None) -> str:
    """Draw ``run_dir``'s training curves (with the start model's metrics at step 0 when the run recorded
    them) to ``output_png`` (default ``run_dir/training_curves.png``); returns the PNG's path."""
    output_png = output_png or os.path.join(run_dir, PLOT_NAME)
    plot_training(load_state(run_dir), output_png, load_start_metrics(run_dir))
    return output_png


def run_labels(run_dirs: list[str]) -> list[str]:
    """Legend labels: each run's path relative to the runs' common parent (``a/seed42``, ``b/seed42``)."""
    paths = [os.path.abspath(d) for d in run_dirs]
    parent = os.path.dirname(os.path.commonpath(paths)) if len(set(paths)) == 1 else os.path.commonpath(paths)
    return [os.path.relpath(path, parent) for path in paths]


def plot_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="mixcse-plot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", help="a run's output_dir (or a checkpoint directory)")
    parser.add_argument("--output", help=f"PNG path (default: RUN_DIR/{PLOT_NAME})")
    parser.add_argument(
        "--gradient_signal", action="store_true", help="compare the runs' gradient signal instead (needs --output)"
    )
    args = parser.parse_args(argv)
    if args.gradient_signal:
        if not args.output:
            raise UsageError("--gradient_signal needs --output FILE.png")
        runs = {label: load_log_history(d) for label, d in zip(run_labels(args.run_dirs), args.run_dirs, strict=True)}
        plot_gradient_signal(runs, args.output)
        print(args.output)
    else:
        for run_dir in args.run_dirs:
            print(plot_run(run_dir, args.output))


def main(argv: list[str] | None = None) -> int:
    return run_cli(plot_command, argv)


if __name__ == "__main__":
    sys.exit(main())
