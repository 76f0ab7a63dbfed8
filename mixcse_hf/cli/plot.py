"""Training curves from a run's ``trainer_state.json``: every evaluation metric over steps (STS-B dev Spearman by
default) from the start model at step 0 to the end, with the kept best checkpoint starred; the training loss
over steps; and alignment vs uniformity per evaluation when measured (the SimCSE paper's Figure 2 view).

    mixcse-plot OUTPUT_DIR [--output FILE.png]
    mixcse-plot RUN_A RUN_B ... --gradient_signal --output FILE.png

(``python -m mixcse_hf.cli.plot`` is the same command.)
"""

from __future__ import annotations

import argparse
import os
import sys

from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.training.curves import plot_gradient_signal, plot_training
from mixcse_hf.training.run_dir import (
    PLOT_FILE,
    TRAINER_STATE_NAME,
    checkpoint_folders,
    read_results,
    read_trainer_state,
)
from mixcse_hf.training.summary import RunSummary


def load_state(run_dir: str) -> dict:
    """The content of ``run_dir/trainer_state.json``, else of the last checkpoint's."""
    folders = [run_dir, *reversed(checkpoint_folders(run_dir))] if os.path.isdir(run_dir) else []
    for folder in folders[:2]:
        if (state := read_trainer_state(folder)) is not None:
            return state
    raise UsageError(f"no {TRAINER_STATE_NAME} in {run_dir!r} or its checkpoints; pass a run's output_dir")


def load_log_history(run_dir: str) -> list[dict]:
    """The run's ``log_history`` (see :func:`load_state`)."""
    return load_state(run_dir)["log_history"]


def load_start_metrics(run_dir: str) -> dict[str, float] | None:
    """The start model's metrics from the run's results file; None without them."""
    results = read_results(run_dir)
    return (RunSummary.from_results(run_dir, results).start_metrics() or None) if results else None


def plot_run(run_dir: str, output_png: str | None = None) -> str:
    """Draw ``run_dir``'s training curves (with the start model's metrics at step 0 when the run recorded
    them) to ``output_png`` (default ``run_dir/training_curves.png``); returns the PNG's path."""
    output_png = output_png or os.path.join(run_dir, PLOT_FILE)
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
    parser.add_argument("--output", help=f"PNG path (default: RUN_DIR/{PLOT_FILE})")
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
