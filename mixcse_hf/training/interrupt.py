"""Ctrl-C during training: the first one stops after the current step with a checkpoint saved to resume from, a
second one stops at once. Either way the command ends with one line saying what was saved."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)


class StopOnInterrupt(TrainerCallback):
    """While :meth:`catching_interrupts` holds, SIGINT asks the training loop to save a checkpoint and stop at the
    end of the current optimizer step (``requested`` turns true); a second SIGINT raises ``KeyboardInterrupt``."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def catching_interrupts(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
            yield
            return
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "Ctrl-C: stopping after this step with a checkpoint to resume from; Ctrl-C again stops at once, "
            "without saving"
        )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.requested:
            control.should_evaluate = False
            control.should_save = True
            control.should_training_stop = True
