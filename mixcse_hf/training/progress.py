"""``TrainingTimeEstimate``: once the first steps are timed, one log line says how long training will take."""

from __future__ import annotations

import logging
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

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
