"""Trainer callbacks of a training run: the run record copied into every checkpoint, and a learning rate changed on
resume taking effect."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from mixcse_hf.training.run_dir import checkpoint_folder, read_run_record, write_run_record

logger = logging.getLogger(__name__)


class RunRecordCallback(TrainerCallback):
    """Copies the run record into every checkpoint once the Trainer has written the rest of it (so a checkpoint
    without one is a partial save, or another run's), with the step and the training time of the run up to it
    (``train_seconds``: ``seconds_before`` of them before this process started, ``None`` if unknown)."""

    def __init__(self, seconds_before: float | None = 0.0) -> None:
        self.seconds_before = seconds_before
        self._started = time.perf_counter()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._started = time.perf_counter()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        record = read_run_record(args.output_dir)
        checkpoint = checkpoint_folder(args.output_dir, state.global_step)
        if state.is_world_process_zero and record is not None and os.path.isdir(checkpoint):
            seconds = None if self.seconds_before is None else self.seconds_before + time.perf_counter() - self._started
            write_run_record(checkpoint, {**record, "global_step": state.global_step, "train_seconds": seconds})


class LearningRateOnResume(TrainerCallback):
    """Makes ``--learning_rate`` take effect on a resumed run (``--resume_changed_settings learning_rate``).

    The Trainer builds the optimizer and scheduler with the requested rate, then restores both from the
    checkpoint, which brings the old rate back: ``base_lrs`` and each group's ``lr`` are the saved ones. Every
    Trainer schedule is proportional to its base rate, so scaling both by new / old continues the same schedule
    at the new rate from the resumed step on. A fresh run, or a resume at the same rate, changes nothing.
    """

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        if lr_scheduler is None or optimizer is None or not getattr(lr_scheduler, "base_lrs", None):
            return
        state = lr_scheduler.state_dict()
        for index, group in enumerate(optimizer.param_groups):
            base = state["base_lrs"][index]
            if base and not math.isclose(base, args.learning_rate):
                state["base_lrs"][index] = args.learning_rate
                group["lr"] *= args.learning_rate / base
                if "initial_lr" in group:
                    group["initial_lr"] = args.learning_rate
                logger.info("Learning rate rescaled from %g to %g on resume", base, args.learning_rate)
        # The rate the Trainer logs (get_last_lr()) is the scheduler's record of it until its next step.
        state["_last_lr"] = [group["lr"] for group in optimizer.param_groups]
        lr_scheduler.load_state_dict(state)
