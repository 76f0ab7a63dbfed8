"""The training-time estimate: logged once, after the first steps are timed, from the steps after the first."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from mixcse_hf.training import progress
from mixcse_hf.training.progress import ProgressLines, TrainingTimeEstimate, format_duration, progress_line
from tests.conftest import train_tiny


def _steps(callback: TrainingTimeEstimate, times: list[float], monkeypatch: pytest.MonkeyPatch, first: int = 0) -> None:
    state = TrainerState(max_steps=186, is_world_process_zero=True)
    args = TrainingArguments(output_dir="unused", report_to="none")
    for step, now in enumerate(times, start=first + 1):
        state.global_step = step
        monkeypatch.setattr(progress.time, "perf_counter", lambda now=now: now)
        callback.on_step_end(args, state, TrainerControl())


def test_one_estimate_from_the_steps_after_the_first(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Step 1 ends at 30 s (start-up), then 2 s per step: the estimate ignores step 1.
    times = [30.0 + 2.0 * k for k in range(10)]
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        _steps(TrainingTimeEstimate(timed_steps=5, min_seconds=100.0), times, monkeypatch)
    lines = [record.message for record in caplog.records]
    assert lines == [
        "2.00 s per step over steps 2-6: the remaining 180 steps take about 6.0 min (evaluations and saves extra)"
    ]


def test_slow_steps_are_estimated_after_min_seconds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """77 s per step (emulated bf16): the estimate comes after one timed step, not five; from a resumed step."""
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        _steps(TrainingTimeEstimate(timed_steps=5, min_seconds=10.0), [0.0, 77.0, 154.0], monkeypatch, first=100)
    assert [record.message for record in caplog.records] == [
        "77.00 s per step over steps 102-102: the remaining 84 steps take about 1.8 h (evaluations and saves extra)"
    ]


def test_durations() -> None:
    assert [format_duration(s) for s in (45, 200, 7200)] == ["45 s", "3.3 min", "2.0 h"]


def test_a_training_log_is_one_short_line() -> None:
    logs = {"loss": 0.41234, "grad_norm": 3.2, "learning_rate": 2.7e-05, "masked_duplicates": 2.5, "epoch": 0.1}
    assert progress_line(logs, 20, 186, 246.0) == "step 20/186  loss 0.4123  masked 2.5  lr 2.7e-05  ETA 4.1 min"
    evaluation = {"eval_stsb_spearman": 82.3127, "eval_runtime": 4.0, "epoch": 0.27}
    expected = "step 50/186  eval_stsb_spearman 82.31  eval_runtime 4  epoch 0.27"
    assert progress_line(evaluation, 50, 186, None) == expected


def test_a_resumed_run_starts_its_bar_at_its_step() -> None:
    callback = ProgressLines()
    state = TrainerState(max_steps=9, global_step=6, is_world_process_zero=True)
    args = TrainingArguments(output_dir="unused", report_to="none")
    callback.on_train_begin(args, state, TrainerControl())
    try:
        assert (callback.training_bar.n, callback.training_bar.total) == (6, 9)
        state.global_step = 7
        callback.on_step_end(args, state, TrainerControl())
        assert callback.training_bar.n == 7
    finally:
        callback.on_train_end(args, state, TrainerControl())


@pytest.mark.parametrize("bar", [True, False])
def test_a_run_prints_lines_and_keeps_every_value_in_its_state(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], bar: bool
) -> None:
    """stdout has a progress line per log, no dict (with the bar or with disable_tqdm); trainer_state.json's
    log_history still holds every value the Trainer and the loss logged."""
    flags = ["--logging_steps", "1", "--disable_tqdm", str(not bar).lower()]
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", *flags)
    printed = capsys.readouterr().out.splitlines()
    assert not [line for line in printed if line.lstrip().startswith("{")]
    lines = [line for line in printed if line.startswith("step ")]
    assert len(lines) == 3  # steps 1 and 2, then the Trainer's summary of the run
    assert all(re.fullmatch(r"step [12]/2  loss \S+  masked \S+  lr \S+( {2}ETA .*)?", line) for line in lines[:2])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert {"loss", "grad_norm", "learning_rate", "masked_duplicates", "grad_anchor_norm"} <= set(history[0])
