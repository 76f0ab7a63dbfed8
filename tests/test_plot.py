"""Training-curve PNGs from a run's trainer_state.json, checked on the drawn figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mixcse_hf.cli.plot import main, plot_run, run_labels
from mixcse_hf.errors import UsageError
from mixcse_hf.training.curves import CURVES_TITLE, LOSS_TITLE, START_LABEL, gradient_signal_figure, training_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"step": 10, "loss": 0.5},
    {"step": 10, "eval_stsb_spearman": 80.0, "eval_alignment": 0.3, "eval_uniformity": -3.0},
    {"step": 20, "loss": 0.4},
    {"step": 20, "eval_stsb_spearman": 81.0, "eval_alignment": 0.25, "eval_uniformity": -3.4},
    {"step": 20, "train_loss": 0.45, "train_runtime": 3.0},
]


def _write_state(directory: Path, log_history: list[dict], **best: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = {"log_history": log_history, **best}
    (directory / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")


def _axis(figure: Figure, title: str) -> Axes:
    return next(axis for axis in figure.axes if axis.get_title() == title)


def _line(axis: Axes, label: str) -> Line2D:
    """The one line (or marker) of ``axis`` with legend label ``label``."""
    (line,) = [line for line in axis.get_lines() if line.get_label() == label]
    return line


def _xy(line: Line2D) -> list[tuple[float, float]]:
    return list(zip(line.get_xdata(), line.get_ydata(), strict=True))


def _is_visible_marker(line: Line2D) -> bool:
    return line.get_marker() not in (None, "None", "", " ") and line.get_markersize() > 0


def test_plot_from_last_checkpoint(tmp_path: Path) -> None:
    _write_state(tmp_path / "run" / "checkpoint-20", HISTORY)
    png = plot_run(str(tmp_path / "run"))
    assert png == str(tmp_path / "run" / "training_curves.png")
    assert Path(png).read_bytes().startswith(PNG_MAGIC)


def test_plot_needs_evaluations(tmp_path: Path) -> None:
    _write_state(tmp_path / "run", [{"step": 1, "loss": 0.1}, {"step": 1, "eval_runtime": 0.5}])
    with pytest.raises(UsageError, match="no evaluation entries"):
        plot_run(str(tmp_path / "run"))


def test_plot_draws_whatever_metrics_were_evaluated() -> None:
    """A custom evaluator's metrics, without alignment/uniformity or loss, are plotted over steps."""
    history = [{"step": 5, "eval_toy_cosine": 0.4, "eval_runtime": 1.0}, {"step": 10, "eval_toy_cosine": 0.5}]
    curves = _axis(training_figure({"log_history": history}), CURVES_TITLE)
    assert _xy(_line(curves, "toy_cosine")) == [(5, 0.4), (10, 0.5)]


def test_start_metrics_drawn_at_step_zero_on_the_curve() -> None:
    figure = training_figure({"log_history": HISTORY}, {"stsb_spearman": 79.5, "alignment": 0.4, "uniformity": -2.5})
    curves = _axis(figure, CURVES_TITLE)
    assert _xy(_line(curves, "stsb_spearman")) == [(0, 79.5), (10, 80.0), (20, 81.0)]
    assert _xy(_line(curves, START_LABEL)) == [(0, 79.5)]
    assert START_LABEL in [text.get_text() for text in curves.get_legend().get_texts()]


def test_logged_step_zero_evaluation_is_not_duplicated() -> None:
    """With ``eval_on_start`` the log's step-0 value is the start; ``start_metrics`` adds only what it lacks."""
    history = [{"step": 0, "eval_stsb_spearman": 79.0}, *HISTORY]
    curves = _axis(training_figure({"log_history": history}, {"stsb_spearman": 70.0, "toy": 1.0}), CURVES_TITLE)
    assert _xy(_line(curves, "stsb_spearman")) == [(0, 79.0), (10, 80.0), (20, 81.0)]
    assert _xy(_line(curves, "toy")) == [(0, 1.0)]
    assert len([line for line in curves.get_lines() if line.get_marker() == "s"]) == 2


def test_training_loss_drawn_over_steps() -> None:
    loss = _axis(training_figure({"log_history": HISTORY}), LOSS_TITLE)
    assert _xy(_line(loss, "training loss")) == [(10, 0.5), (20, 0.4)]


@pytest.mark.parametrize(
    "best",
    [
        {"best_global_step": 10, "best_metric": 80.0, "best_model_checkpoint": "out/run/checkpoint-10"},
        {"best_metric": 80.0, "best_model_checkpoint": "out/run/checkpoint-10/"},  # older states: no step
    ],
)
def test_kept_best_checkpoint_starred_on_its_metric(best: dict) -> None:
    curves = _axis(training_figure({"log_history": HISTORY, **best}), CURVES_TITLE)
    star = _line(curves, "kept best (step 10)")
    assert star.get_marker() == "*"
    assert _xy(star) == [(10, 80.0)]


def test_kept_best_on_an_undrawn_metric_is_a_step_line() -> None:
    state = {"log_history": HISTORY, "best_global_step": 20, "best_metric": 0.12}
    line = _line(_axis(training_figure(state), CURVES_TITLE), "kept best (step 20)")
    assert list(line.get_xdata()) == [20, 20]


def test_one_evaluation_run_has_integer_steps_and_a_marker() -> None:
    curves = _axis(training_figure({"log_history": [{"step": 3, "eval_stsb_spearman": 75.0}]}), CURVES_TITLE)
    assert _is_visible_marker(_line(curves, "stsb_spearman"))
    low, high = curves.get_xlim()
    assert low < 0 and 3 < high < 4
    ticks = [tick for tick in curves.get_xticks() if low <= tick <= high]
    assert 3 in ticks
    assert all(tick == int(tick) for tick in ticks)


def test_gradient_signal_one_point_run_is_visible() -> None:
    figure = gradient_signal_figure({"short": [{"step": 1, "grad_anchor_norm": 0.5, "grad_mixed_share": 0.2}]})
    for axis in figure.axes:
        line = _line(axis, "short")
        assert _is_visible_marker(line)
        low, high = axis.get_xlim()
        assert low < 1 < high
        assert all(tick == int(tick) for tick in axis.get_xticks())


def test_plot_run_reads_start_metrics_from_sts_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_state(tmp_path / "run", HISTORY)
    results = {"pooler": "avg", "stsb_spearman": {"avg": {"start": {"dev": 79.73, "test": 70.0}, "trained": {}}}}
    (tmp_path / "run" / "sts_results.json").write_text(json.dumps(results), encoding="utf-8")
    drawn: list[tuple[dict, dict | None]] = []
    monkeypatch.setattr("mixcse_hf.cli.plot.plot_training", lambda state, png, start: drawn.append((state, start)))
    plot_run(str(tmp_path / "run"))
    assert drawn == [({"log_history": HISTORY}, {"stsb_spearman": 79.73})]


def test_cli_missing_state_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no trainer_state.json")


def test_cli_help_names_the_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse exits after --help; run_cli lets that through
        main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: mixcse-plot")


def test_gradient_signal_comparison(tmp_path: Path) -> None:
    for name, share in (("simcse", 0.0), ("mixcse", 0.3)):
        history = [{"step": s, "loss": 1.0, "grad_anchor_norm": 1 / s, "grad_mixed_share": share} for s in (1, 2)]
        _write_state(tmp_path / name, history)
    output = tmp_path / "signal.png"
    assert main([str(tmp_path / "simcse"), str(tmp_path / "mixcse"), "--gradient_signal", "--output", str(output)]) == 0
    assert output.read_bytes().startswith(PNG_MAGIC)
    _write_state(tmp_path / "old", [{"step": 1, "loss": 1.0}])
    assert main([str(tmp_path / "old"), "--gradient_signal", "--output", str(output)]) == 2


def test_run_labels_tell_same_named_runs_apart() -> None:
    assert run_labels(["out/simcse/seed42", "out/mixcse/seed42/"]) == ["simcse/seed42", "mixcse/seed42"]
    assert run_labels(["out/simcse"]) == ["simcse"]
