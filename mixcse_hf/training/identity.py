"""What a run is: its identity and defining settings, recorded with its outputs, and one run per ``output_dir``.

``OUTPUT_DIR/mixcse_run.json`` (and a copy in every checkpoint) holds a run id, the settings that define the run
(model, data, loss, optimisation, batch, seed) and, once training finished, ``completed``. Resuming compares
the saved settings with the new ones and refuses a difference unless the user names the setting in
``--resume_changed_settings``, which accepts only :data:`CHANGEABLE` settings (those that take effect when
changed mid-run). A checkpoint whose run id is not the output directory's is never resumed, so overwriting
starts a new run id first and then removes the old checkpoints: a crash in between cannot mix them.

``OUTPUT_DIR/.mixcse.lock`` holds the pid of the run training there; a second run refuses to start, and a lock
left by a process that no longer exists is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mixcse_hf.errors import UsageError
from mixcse_hf.paths import write_json_atomically
from mixcse_hf.training.options import LOSS_OPTIONS

logger = logging.getLogger(__name__)

RUN_FILE = "mixcse_run.json"
LOCK_FILE = ".mixcse.lock"

SCHEDULE_OPTIONS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "max_steps",
    "num_train_epochs",
)

CHANGEABLE = (*SCHEDULE_OPTIONS, *LOSS_OPTIONS, "bf16")
"""Settings ``--resume_changed_settings`` may change on resume; each takes effect from the resumed step on (a new
learning rate rescales the restored optimizer and scheduler). The others (model, data, batch, seed, optimizer
state, fp16 loss scaling) would silently mix two runs: start a new run for those."""

DEFINING = {
    "model": (
        "model_name_or_path",
        "reinit_mlp",
        "use_lora",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
    ),
    "data": (
        "train_file",
        "dataset_name",
        "dataset_config_name",
        "dataset_split",
        "text_column",
        "text_columns",
        "max_seq_length",
        "max_train_samples",
        "streaming",
        "shuffle_buffer_size",
    ),
    "training": (
        "pooler_type",
        "mlp_only_train",
        *LOSS_OPTIONS,
        *SCHEDULE_OPTIONS,
        *("weight_decay", "optim", "adam_beta1", "adam_beta2", "adam_epsilon"),
        *("per_device_train_batch_size", "gradient_accumulation_steps", "seed", "data_seed", "bf16", "fp16"),
    ),
}
"""Argument names, by dataclass, whose values define a run."""


ADDED_LATER = {
    "text_columns": None,
    "hard_negative_weight": 0.0,
    "mixed_hard_negative": False,
    "streaming": False,
    "shuffle_buffer_size": 10_000,
}
"""Defining settings that runs recorded before they existed trained with, at these values (no supervised data)."""


def defining_settings(model_args: Any, data_args: Any, training_args: Any) -> dict[str, Any]:
    """The values of :data:`DEFINING`, plus the number of processes (it sets the global batch)."""
    sources = {"model": model_args, "data": data_args, "training": training_args}
    settings = {name: getattr(sources[group], name) for group, names in DEFINING.items() for name in names}
    settings["processes"] = training_args.world_size
    return settings


def new_identity(settings: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": uuid.uuid4().hex, "settings": settings, "completed": False}


def read_identity(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError:
        return None


def resumed_settings(
    output_dir: str, resume_from_checkpoint: str | None, overwrite_output_dir: bool
) -> dict[str, Any] | None:
    """The defining settings recorded by the run that a start with these arguments would continue, or None for a
    new run. Reads only; :func:`mixcse_hf.training.resume.plan_run` decides (and refuses) the rest."""
    source = resume_from_checkpoint or (None if overwrite_output_dir else output_dir)
    identity = read_identity(source) if source and os.path.isdir(source) else None
    return identity.get("settings") if identity else None


def write_identity(directory: str, identity: dict[str, Any]) -> None:
    """Atomically (write, then rename), so a crash leaves the old file or the new one."""
    write_json_atomically(os.path.join(directory, RUN_FILE), identity, indent=2, default=str)


def _comparable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_same_run(saved: dict[str, Any], new: dict[str, Any], allowed: list[str], where: str) -> list[str]:
    """Refuse a resume whose defining settings differ from ``saved``, except the ``allowed`` ones; returns the
    names of the settings that changed (and were allowed; the arguments accept only :data:`CHANGEABLE` ones)."""
    changed = []
    saved = _comparable(saved)
    for name, value in _comparable(new).items():
        old = saved.get(name, ADDED_LATER.get(name))
        if old == value:
            continue
        if name not in allowed:
            hint = (
                f"pass --resume_changed_settings {name} to change it from the resumed step on"
                if name in CHANGEABLE
                else "start a new run in a new output_dir or pass --overwrite_output_dir true"
            )
            raise UsageError(f"{where} was trained with {name}={old!r}, this run asks for {name}={value!r}; {hint}")
        changed.append(name)
    return changed


def remove_checkpoints(output_dir: str, keep_run_id: str) -> None:
    """Delete the ``checkpoint-*`` folders of other runs (their run id differs from ``keep_run_id``)."""
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            identity = read_identity(path)
            if identity is None or identity.get("run_id") != keep_run_id:
                shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_dir_lock(output_dir: str) -> Iterator[None]:
    """Hold ``output_dir``'s lock for the duration; a live holder is a :class:`UsageError`, a dead one's lock is
    taken over with a warning. The lock file is created atomically (``O_EXCL``)."""
    created = not os.path.exists(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    owner = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is not None and (holder[0] != socket.gethostname() or _process_alive(holder[1])):
                raise UsageError(
                    f"output_dir {output_dir!r} is in use by another run (process {holder[1]} on {holder[0]}); "
                    "wait for it to finish or choose another output_dir"
                ) from None
            logger.warning("Taking over the lock of a run that no longer exists: %s", path)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(owner)
        break
    else:
        raise UsageError(f"cannot take the lock {path!r}; another run is starting in the same output_dir")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only when the run wrote nothing (a refused input)


def _read_lock(path: str) -> tuple[str, int] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            host, pid = handle.read().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


class RunIdentityCallback(TrainerCallback):
    """Copies the run identity into every checkpoint once the Trainer has written it (so a checkpoint without
    one is a partial save, or another run's), with the training time of the run up to it (``train_seconds``,
    ``seconds_before`` of them before this process started, ``None`` if unknown), and makes a learning rate
    changed on resume take effect."""

    def __init__(self, seconds_before: float | None = 0.0) -> None:
        self.seconds_before = seconds_before
        self._started = time.perf_counter()

    def on_save(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        identity = read_identity(args.output_dir)
        checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if state.is_world_process_zero and identity is not None and os.path.isdir(checkpoint):
            seconds = None if self.seconds_before is None else self.seconds_before + time.perf_counter() - self._started
            write_identity(checkpoint, {**identity, "global_step": state.global_step, "train_seconds": seconds})

    def on_train_begin(
        self,
        args: Any,
        state: TrainerState,
        control: TrainerControl,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        **kwargs: Any,
    ) -> None:
        self._started = time.perf_counter()
        # A resumed run restores the optimizer's and scheduler's learning rates from the checkpoint; scale them
        # to the requested one (every Trainer schedule is proportional to its base learning rate).
        if lr_scheduler is None or optimizer is None or not getattr(lr_scheduler, "base_lrs", None):
            return
        for index, group in enumerate(optimizer.param_groups):
            base = lr_scheduler.base_lrs[index]
            if base and not math.isclose(base, args.learning_rate):
                ratio = args.learning_rate / base
                lr_scheduler.base_lrs[index] = args.learning_rate
                group["lr"] *= ratio
                if "initial_lr" in group:
                    group["initial_lr"] = args.learning_rate
                logger.info("Learning rate rescaled from %g to %g on resume", base, args.learning_rate)
        # get_last_lr() (what the Trainer logs) returns this cache until the next scheduler step; torch has no
        # public way to refresh it.
        lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
