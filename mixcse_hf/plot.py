"""Training curves from a run's ``trainer_state.json``: every evaluation metric over steps (STS-B dev Spearman by
default), and alignment vs uniformity per evaluation when measured (the SimCSE paper's Figure 2 view).

    python -m mixcse_hf.plot OUTPUT_DIR [--output FILE.png]
    python -m mixcse_hf.plot RUN_A RUN_B ... --gradient_signal --output FILE.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from matplotlib.figure import Figure
from transformers.trainer_utils import get_last_checkpoint

from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.training.history import evaluation_metrics, evaluation_points

STATE_FILE = "trainer_state.json"
PLOT_NAME = "training_curves.png"


def find_trainer_state(run_dir: str) -> str:
    """``run_dir/trainer_state.json``, else the last checkpoint's."""
    candidates = [os.path.join(run_dir, STATE_FILE)]
    if os.path.isdir(run_dir) and (last := get_last_checkpoint(run_dir)):
        candidates.append(os.path.join(last, STATE_FILE))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise UsageError(f"no {STATE_FILE} in {run_dir!r} or its checkpoints; pass a run's output_dir")


GEOMETRY_METRICS = ("alignment", "uniformity")


def plot_training(log_history: list[dict], output_png: str) -> None:
    points = evaluation_points(log_history)
    if not points:
        raise UsageError("the log has no evaluation entries; train with eval_strategy steps or epoch")
    names = list(dict.fromkeys(name for p in points for name in evaluation_metrics(p) if name not in GEOMETRY_METRICS))
    figure = Figure(figsize=(11, 4.2))  # no pyplot: headless, and no global backend change
    curve, geometry = figure.subplots(1, 2)
    for name in names:
        measured = [p for p in points if f"eval_{name}" in p]
        curve.plot([p["step"] for p in measured], [p[f"eval_{name}"] for p in measured], marker="o", label=name)
    curve.set(xlabel="training step", ylabel="metric", title="Evaluation during training")
    if names:
        curve.legend()
    curve.grid(alpha=0.3)
    with_geometry = [p for p in points if "eval_alignment" in p and "eval_uniformity" in p]
    if with_geometry:
        uniformity = [p["eval_uniformity"] for p in with_geometry]
        alignment = [p["eval_alignment"] for p in with_geometry]
        dots = geometry.scatter(uniformity, alignment, c=[p["step"] for p in with_geometry], cmap="viridis")
        figure.colorbar(dots, ax=geometry, label="step")
        for point, x, y in zip(with_geometry, uniformity, alignment, strict=True):
            geometry.annotate(str(point["step"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    geometry.set(xlabel="uniformity (lower is better)", ylabel="alignment (lower is better)")
    geometry.set_title("STS-B dev embeddings per evaluation")
    geometry.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output_png, dpi=120)


def plot_gradient_signal(runs: dict[str, list[dict]], output_png: str) -> None:
    """Per run (label -> log history): the anchor-gradient norm and the mixed-negative share over steps, the
    paper's central claim (mixed negatives keep the gradient from fading) on our own runs."""
    figure = Figure(figsize=(11, 4.2))
    norm_axis, share_axis = figure.subplots(1, 2)
    for label, log_history in runs.items():
        points = [entry for entry in log_history if "grad_anchor_norm" in entry]
        if not points:
            raise UsageError(f"run {label!r} logged no grad_anchor_norm; train with log_gradient_signal true")
        steps = [p["step"] for p in points]
        norm_axis.plot(steps, [p["grad_anchor_norm"] for p in points], label=label)
        share_axis.plot(steps, [p["grad_mixed_share"] for p in points], label=label)
    norm_axis.set(xlabel="training step", ylabel="|dLoss / d anchor embeddings|", title="Gradient signal")
    share_axis.set(xlabel="training step", ylabel="share from mixed negatives", title="Mixed-negative share")
    for axis in (norm_axis, share_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(output_png, dpi=120)


def load_log_history(run_dir: str) -> list[dict]:
    with open(find_trainer_state(run_dir), encoding="utf-8") as handle:
        return json.load(handle)["log_history"]


def plot_run(run_dir: str, output_png: str | None = None) -> str:
    output_png = output_png or os.path.join(run_dir, PLOT_NAME)
    plot_training(load_log_history(run_dir), output_png)
    return output_png


def run_labels(run_dirs: list[str]) -> list[str]:
    """Legend labels: each run's path relative to the runs' common parent (``a/seed42``, ``b/seed42``)."""
    paths = [os.path.abspath(d) for d in run_dirs]
    parent = os.path.dirname(os.path.commonpath(paths)) if len(set(paths)) == 1 else os.path.commonpath(paths)
    return [os.path.relpath(path, parent) for path in paths]


def plot_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
