"""Training-curve PNGs from a run's trainer_state.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixcse_hf.errors import UsageError
from mixcse_hf.plot import main, plot_run, run_labels

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_state(directory: Path, log_history: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trainer_state.json").write_text(json.dumps({"log_history": log_history}), encoding="utf-8")


def test_plot_from_last_checkpoint(tmp_path: Path) -> None:
    history = [
        {"step": 10, "loss": 0.5},
        {"step": 10, "eval_stsb_spearman": 80.0, "eval_alignment": 0.3, "eval_uniformity": -3.0},
        {"step": 20, "eval_stsb_spearman": 81.0, "eval_alignment": 0.25, "eval_uniformity": -3.4},
    ]
    _write_state(tmp_path / "run" / "checkpoint-20", history)
    png = plot_run(str(tmp_path / "run"))
    assert png == str(tmp_path / "run" / "training_curves.png")
    assert Path(png).read_bytes().startswith(PNG_MAGIC)


def test_plot_needs_evaluations(tmp_path: Path) -> None:
    _write_state(tmp_path / "run", [{"step": 1, "loss": 0.1}, {"step": 1, "eval_runtime": 0.5}])
    with pytest.raises(UsageError, match="no evaluation entries"):
        plot_run(str(tmp_path / "run"))


def test_plot_draws_whatever_metrics_were_evaluated(tmp_path: Path) -> None:
    """A custom evaluator's metrics, without alignment/uniformity, are plotted over steps."""
    history = [{"step": 5, "eval_toy_cosine": 0.4, "eval_runtime": 1.0}, {"step": 10, "eval_toy_cosine": 0.5}]
    _write_state(tmp_path / "run", history)
    assert Path(plot_run(str(tmp_path / "run"))).read_bytes().startswith(PNG_MAGIC)


def test_cli_missing_state_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no trainer_state.json")


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
