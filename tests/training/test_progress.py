"""The training-time estimate: logged once, after the first steps are timed, from the steps after the first."""

from __future__ import annotations

import logging

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from mixcse_hf.training import progress
from mixcse_hf.training.progress import TrainingTimeEstimate, format_duration


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
