"""Training-curve figures: every evaluation metric over steps (STS-B dev Spearman by default) from the start model at
step 0 to the end, with the kept best checkpoint starred; the training loss over steps; alignment vs uniformity per
evaluation when measured (the SimCSE paper's Figure 2 view); and the gradient signal of several runs.

The only module of the package that imports matplotlib; the job draws ``training_curves.png`` with it and
``mixcse-plot`` (:mod:`mixcse_hf.cli.plot`) redraws it from a run's folder.
"""

from __future__ import annotations

import math

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mixcse_hf.errors import UsageError
from mixcse_hf.training.history import EVAL_PREFIX, evaluation_metrics, evaluation_points
from mixcse_hf.training.run_dir import checkpoint_folder_step

GEOMETRY_METRICS = ("alignment", "uniformity")
CURVES_TITLE = "Evaluation during training"
LOSS_TITLE = "Training loss"
GEOMETRY_TITLE = "STS-B dev embeddings per evaluation"
START_LABEL = "start model (step 0)"


def with_start(points: list[dict], start_metrics: dict[str, float] | None) -> list[dict]:
    """Evaluation entries with the start model's metrics (names without ``eval_``) as one entry at step 0.

    A step-0 evaluation already in the log (``eval_on_start``) wins over ``start_metrics`` for the metrics it
    has, so no metric gets two step-0 values.
    """
    if not start_metrics:
        return points
    logged = next((p for p in points if p["step"] == 0), {})
    start = {**{f"{EVAL_PREFIX}{name}": value for name, value in start_metrics.items()}, **logged, "step": 0}
    return [start, *(p for p in points if p["step"] != 0)]


def best_step(state: dict) -> int | None:
    """The step of the kept best checkpoint: ``best_global_step``, else the N of ``best_model_checkpoint``'s
    ``checkpoint-N``; None when the state names no best checkpoint."""
    if state.get("best_global_step") is not None:
        return int(state["best_global_step"])
    return checkpoint_folder_step((state.get("best_model_checkpoint") or "").rstrip("/\\"))


def loss_points(log_history: list[dict]) -> list[dict]:
    """The training-log entries of ``log_history`` that carry a ``loss`` (every ``logging_steps``)."""
    return [entry for entry in log_history if "loss" in entry]


def step_axis(axis: Axes, last_step: int) -> None:
    """Integer step ticks from 0 to ``last_step``, with room for the markers at both ends (also for one point)."""
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    pad = max(0.5, 0.03 * last_step)
    axis.set_xlim(-pad, last_step + pad)
    axis.set_xlabel("training step")
    axis.grid(alpha=0.3)


def metric_names(points: list[dict]) -> list[str]:
    """The metrics measured in ``points`` (evaluation entries) that are drawn as curves, in first-seen order."""
    return list(dict.fromkeys(name for p in points for name in evaluation_metrics(p) if name not in GEOMETRY_METRICS))


def draw_curves(axis: Axes, points: list[dict], names: list[str]) -> None:
    """Each metric of ``names`` over the steps of ``points``, its step-0 value marked as the start."""
    start_label = START_LABEL
    for name in names:
        measured = [p for p in points if f"{EVAL_PREFIX}{name}" in p]
        steps = [p["step"] for p in measured]
        values = [p[f"{EVAL_PREFIX}{name}"] for p in measured]
        line = axis.plot(steps, values, marker="o", label=name)[0]
        if steps[0] == 0:
            axis.plot(0, values[0], "s", ms=9, mfc="white", mec=line.get_color(), mew=2, label=start_label)
            start_label = "_start"  # a leading underscore keeps the other metrics' starts out of the legend
    axis.set(ylabel="metric", title=CURVES_TITLE)


def draw_best(axis: Axes, points: list[dict], names: list[str], step: int, best_metric: float | None) -> None:
    """A star at ``step`` on the metric whose value there is ``best_metric`` (the state does not say which
    metric selected the best model); a dashed line at ``step`` when none matches, e.g. a choice on a loss."""
    label = f"kept best (step {step})"
    at_step = next((p for p in points if p["step"] == step), {})
    values = [at_step[f"{EVAL_PREFIX}{name}"] for name in names if f"{EVAL_PREFIX}{name}" in at_step]
    matching = [v for v in values if best_metric is not None and math.isclose(v, best_metric, rel_tol=1e-6)]
    if matching:
        axis.plot(step, matching[0], "*", ms=18, mfc="gold", mec="black", zorder=3, label=label)
    else:
        axis.axvline(step, ls="--", color="gray", label=label)


def note(axis: Axes, text: str) -> None:
    """``text`` in grey in the middle of an ``axis`` that has nothing to draw."""
    axis.text(0.5, 0.5, text, transform=axis.transAxes, ha="center", color="gray")


def draw_loss(axis: Axes, log_history: list[dict]) -> None:
    """The logged training loss over steps, or a note that none was logged."""
    points = loss_points(log_history)
    if points:
        axis.plot([p["step"] for p in points], [p["loss"] for p in points], marker="o", ms=4, label="training loss")
        axis.legend()
    else:
        note(axis, "no training loss logged")
    axis.set(ylabel="loss (mean over each logging interval)", title=LOSS_TITLE)


def draw_geometry(figure: Figure, axis: Axes, points: list[dict]) -> None:
    """Alignment vs uniformity of each evaluation that measured both, coloured and labelled by step."""
    with_geometry = [p for p in points if "eval_alignment" in p and "eval_uniformity" in p]
    if with_geometry:
        uniformity = [p["eval_uniformity"] for p in with_geometry]
        alignment = [p["eval_alignment"] for p in with_geometry]
        dots = axis.scatter(uniformity, alignment, c=[p["step"] for p in with_geometry], cmap="viridis")
        figure.colorbar(dots, ax=axis, label="step")
        for point, x, y in zip(with_geometry, uniformity, alignment, strict=True):
            axis.annotate(str(point["step"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    else:
        note(axis, "alignment and uniformity not measured")
    axis.set(xlabel="uniformity (lower is better)", ylabel="alignment (lower is better)", title=GEOMETRY_TITLE)
    axis.grid(alpha=0.3)


def training_figure(state: dict, start_metrics: dict[str, float] | None = None) -> Figure:
    """The training-curve figure of one run (see :func:`plot_training` for what goes in)."""
    log_history = state["log_history"]
    points = evaluation_points(log_history)
    if not points:
        raise UsageError("the log has no evaluation entries; train with eval_strategy steps or epoch")
    points = with_start(points, start_metrics)
    figure = Figure(figsize=(16, 4.4))  # no pyplot: headless, and no global backend change
    curves = figure.add_subplot(1, 3, 1)
    loss = figure.add_subplot(1, 3, 2, sharex=curves)
    names = metric_names(points)
    draw_curves(curves, points, names)
    if (best := best_step(state)) is not None:
        draw_best(curves, points, names, best, state.get("best_metric"))
    if names or best is not None:
        curves.legend()
    draw_loss(loss, log_history)
    last_step = max(entry["step"] for entry in [*points, *loss_points(log_history)])
    for axis in (curves, loss):
        step_axis(axis, last_step)
    draw_geometry(figure, figure.add_subplot(1, 3, 3), points)
    figure.tight_layout()
    return figure


def plot_training(state: dict, output_png: str, start_metrics: dict[str, float] | None = None) -> None:
    """Save the training curves of one run to ``output_png``.

    ``state`` is the content of a ``trainer_state.json``: its ``log_history`` (evaluation entries ``eval_*``,
    training entries with ``loss``) and, when a best model was selected, ``best_global_step`` (or, in older
    states, only ``best_model_checkpoint`` ".../checkpoint-N") and ``best_metric``. ``start_metrics`` maps
    metric names without ``eval_`` to the start model's values, drawn at step 0. Raises :class:`UsageError`
    when the log has no evaluation.
    """
    training_figure(state, start_metrics).savefig(output_png, dpi=120)


def gradient_signal_figure(runs: dict[str, list[dict]]) -> Figure:
    """Per run (label -> log history): the anchor-gradient norm and the mixed-negative share over steps, the
    paper's central claim (mixed negatives keep the gradient from fading) on our own runs."""
    figure = Figure(figsize=(11, 4.2))
    norm_axis, share_axis = figure.subplots(1, 2, sharex=True)
    last_step = 0
    for label, log_history in runs.items():
        points = [entry for entry in log_history if "grad_anchor_norm" in entry]
        if not points:
            raise UsageError(f"run {label!r} logged no grad_anchor_norm; train with log_gradient_signal true")
        steps = [p["step"] for p in points]
        last_step = max(last_step, *steps)
        norm_axis.plot(steps, [p["grad_anchor_norm"] for p in points], marker="o", ms=4, label=label)
        share_axis.plot(steps, [p["grad_mixed_share"] for p in points], marker="o", ms=4, label=label)
    norm_axis.set(ylabel="|dLoss / d anchor embeddings|", title="Gradient signal")
    share_axis.set(ylabel="share from mixed negatives", title="Mixed-negative share")
    for axis in (norm_axis, share_axis):
        step_axis(axis, last_step)
        axis.legend()
    figure.tight_layout()
    return figure


def plot_gradient_signal(runs: dict[str, list[dict]], output_png: str) -> None:
    """Save :func:`gradient_signal_figure` of ``runs`` (label -> log history) to ``output_png``."""
    gradient_signal_figure(runs).savefig(output_png, dpi=120)
