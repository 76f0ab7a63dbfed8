"""What a person reads while a run trains: ``TrainingTimeEstimate`` (once the first steps are timed, one log line
says how long training will take) and ``ProgressLines`` (the progress bar, and one short line per log)."""

from __future__ import annotations

import logging
import time
from typing import Any

from tqdm.auto import tqdm
from transformers import ProgressCallback, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)


class TrainingTimeEstimate(TrainerCallback):
    """Times the steps after the first of this process's run (the first pays for start-up) until ``timed_steps``
    of them or ``min_seconds`` have passed, then logs the time per step and the remaining training time once,
    on the main process. Evaluations and saves are not in the estimate; the line says so."""

    def __init__(self, timed_steps: int = 5, min_seconds: float = 10.0) -> None:
        self.timed_steps = timed_steps
        self.min_seconds = min_seconds
        self._start: tuple[int, float] | None = None
        self._done = False

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._done or not state.is_world_process_zero:
            return
        now = time.perf_counter()
        if self._start is None:
            self._start = (state.global_step, now)
            return
        first_step, started = self._start
        steps, seconds = state.global_step - first_step, now - started
        if steps < self.timed_steps and seconds < self.min_seconds:
            return
        self._done = True
        remaining = max(state.max_steps - state.global_step, 0)
        logger.info(
            "%.2f s per step over steps %d-%d: the remaining %d steps take about %s (evaluations and saves extra)",
            seconds / steps,
            first_step + 1,
            state.global_step,
            remaining,
            format_duration(remaining * seconds / steps),
        )


def format_duration(seconds: float) -> str:
    """E.g. ``45 s``, ``3.2 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


PROGRESS_METRICS = {"loss": "loss", "masked_duplicates": "masked", "learning_rate": "lr"}
"""The training log's values a progress line shows, by their short name; the others (grad norms, the loss's
components) stay in ``trainer_state.json``'s ``log_history`` and what ``report_to`` sends."""


def progress_line(logs: dict[str, Any], step: int, max_steps: int, remaining_seconds: float | None) -> str:
    """One line for a log entry: a training log's step, loss, masked duplicates, learning rate and the time left;
    an evaluation's metrics; any other entry's values, each ``name value``."""
    parts = [f"step {step}/{max_steps}"]
    if "loss" in logs:
        parts += [f"{short} {logs[name]:.4g}" for name, short in PROGRESS_METRICS.items() if name in logs]
        if remaining_seconds is not None:
            parts.append(f"ETA {format_duration(remaining_seconds)}")
    else:
        shown = (name_value for name_value in logs.items() if name_value[0] != "total_flos")
        parts += [f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}" for name, value in shown]
    return "  ".join(parts)


class ProgressLines(ProgressCallback):
    """The Trainer's progress callback, as a person reads it: the bar starts at the step a resumed run starts from
    (not at 0), and each log is one :func:`progress_line` instead of the log's whole dict. ``bar=False``
    (``disable_tqdm``): the lines alone, printed."""

    def __init__(self, bar: bool = True) -> None:
        super().__init__()
        self.bar = bar
        self._start: tuple[int, float] = (0, 0.0)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._start = (state.global_step, time.perf_counter())
        self.current_step = state.global_step
        if self.bar and state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bar:
            super().on_prediction_step(args, state, control, **kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs or (self.bar and self.training_bar is None):
            return  # with the bar, lines go with it, while training, as the Trainer's own callback writes them
        line = progress_line(logs, state.global_step, state.max_steps, self.remaining_seconds(state))
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            print(line)

    def remaining_seconds(self, state: TrainerState) -> float | None:
        """The time the steps left take at this process's pace so far (evaluations and saves included)."""
        first_step, started = self._start
        done = state.global_step - first_step
        if done <= 0:
            return None
        return (time.perf_counter() - started) / done * max(state.max_steps - state.global_step, 0)
