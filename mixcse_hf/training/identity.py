"""What a run is: the settings that define it, compared when a run is resumed.

The run record (:data:`mixcse_hf.training.run_dir.RUN_FILE`, in ``OUTPUT_DIR`` and every checkpoint) holds a run
id and the settings that define the run (model, data, loss, optimisation, batch, seed). Resuming compares the saved
settings with the new ones and refuses a difference unless the user names the setting in
``--resume_changed_settings``, which accepts only :data:`CHANGEABLE` settings (those that take effect when changed
mid-run). A checkpoint whose run id is not the output directory's is never resumed, so overwriting starts a new
run id first and then removes the old checkpoints: a crash in between cannot mix them.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

from mixcse_hf.errors import UsageError
from mixcse_hf.training.arguments import LOSS_OPTIONS
from mixcse_hf.training.precision import precision_of_flags
from mixcse_hf.training.run_dir import read_run_record

SCHEDULE_OPTIONS = (
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "max_grad_norm",
    "max_steps",
    "num_train_epochs",
)

TRAIN_FILE_CONTENT = "train_file_content"
"""The defining setting that fingerprints ``train_file``'s content (:func:`file_content`)."""

PRECISION = "precision"
"""The setting a user changes for the Trainer's ``bf16``/``fp16`` flags, which the run record keeps: resuming
compares and names it instead of them."""
PRECISION_FLAGS = ("bf16", "fp16")

CHANGEABLE = (*SCHEDULE_OPTIONS, *LOSS_OPTIONS, PRECISION, TRAIN_FILE_CONTENT)
"""Settings ``--resume_changed_settings`` may change on resume; each takes effect from the resumed step on (a new
learning rate rescales the restored optimizer and scheduler; a train_file rewritten in place is read as it is now;
precision between bf16 and fp32). The others (model, data, batch, seed, optimizer state, fp16 loss scaling) would
silently mix two runs: start a new run for those."""
CHANGEABLE_ALIASES = {"bf16": PRECISION}
"""Earlier names ``--resume_changed_settings`` still accepts for a :data:`CHANGEABLE` setting."""

WHOLE_FILE_HASH_BYTES = 64 << 20
EDGE_BYTES = 1 << 20


def file_content(path: str | None) -> dict[str, Any] | None:
    """A fingerprint of a training file's content, cheap at any size: its size and the SHA-256 of the whole file
    up to 64 MiB, else of its first and last MiB. None without a file (a ``datasets`` dataset)."""
    if path is None or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= WHOLE_FILE_HASH_BYTES:
            while block := handle.read(EDGE_BYTES):
                digest.update(block)
        else:
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return {"bytes": size, "sha256": digest.hexdigest()}


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
        "train_dropout",
        "prompts",
        "include_prompt",
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
    "mask_duplicates": False,
    "streaming": False,
    "shuffle_buffer_size": 10_000,
    "train_dropout": "auto",
    "prompts": None,
    "include_prompt": True,
}
"""Defining settings that runs recorded before they existed trained with, at these values (no supervised data)."""
KEPT_ON_RESUME = {"pooler_type": "auto"}
"""Defining settings whose value here (``auto``: the model's own) lets a resumed run keep its recorded one."""
UNKNOWN_BEFORE = (TRAIN_FILE_CONTENT,)
"""Defining settings whose value runs recorded before they existed did not know: not compared for those runs."""


def defining_settings(model_args: Any, data_args: Any, training_args: Any) -> dict[str, Any]:
    """The values of :data:`DEFINING`, plus the number of processes (it sets the global batch)."""
    sources = {"model": model_args, "data": data_args, "training": training_args}
    settings = {name: getattr(sources[group], name) for group, names in DEFINING.items() for name in names}
    settings["processes"] = training_args.world_size
    settings[TRAIN_FILE_CONTENT] = file_content(data_args.train_file)
    return settings


def keep_resumed_values(saved: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the saved run's value of each :data:`KEPT_ON_RESUME` setting this run leaves to it."""
    left = [name for name, value in KEPT_ON_RESUME.items() if settings.get(name) == value and name in saved]
    return {**settings, **{name: saved[name] for name in left}}


def new_identity(settings: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": uuid.uuid4().hex, "settings": settings, "completed": False}


def resumed_settings(
    output_dir: str, resume_from_checkpoint: str | None, overwrite_output_dir: bool
) -> dict[str, Any] | None:
    """The defining settings recorded by the run that a start with these arguments would continue, or None for a
    new run. Reads only; :func:`mixcse_hf.training.resume.plan_run` decides (and refuses) the rest."""
    source = resume_from_checkpoint or (None if overwrite_output_dir else output_dir)
    record = read_run_record(source) if source and os.path.isdir(source) else None
    return record.get("settings") if record else None


def _comparable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _as_flag(value: Any) -> str:
    """``value`` as a command line gives it (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _with_precision(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the Trainer's bf16/fp16 flags as the :data:`PRECISION` they give."""
    if not any(flag in settings for flag in PRECISION_FLAGS):
        return settings
    rest = {name: value for name, value in settings.items() if name not in PRECISION_FLAGS}
    return {**rest, PRECISION: precision_of_flags(settings.get("bf16"), settings.get("fp16"))}


def _changeable(name: str, old: Any, new: Any) -> bool:
    """Whether ``name`` may change from ``old`` to ``new`` on resume: fp16's loss scaling cannot start or stop."""
    return name in CHANGEABLE and not (name == PRECISION and "fp16" in (old, new))


def check_same_run(saved: dict[str, Any], new: dict[str, Any], allowed: list[str], where: str) -> list[str]:
    """Refuse a resume whose defining settings differ from ``saved``, except the ``allowed`` ones; returns the
    names of the settings that changed (and were allowed; the arguments accept only :data:`CHANGEABLE` ones)."""
    changed = []
    saved = _with_precision(_comparable(saved))
    allowed = [CHANGEABLE_ALIASES.get(name, name) for name in allowed]
    for name, value in _with_precision(_comparable(new)).items():
        if name not in saved and name in UNKNOWN_BEFORE:
            continue
        old = saved.get(name, ADDED_LATER.get(name))
        if old == value:
            continue
        if name == TRAIN_FILE_CONTENT and name not in allowed:
            raise UsageError(
                f"{where} was trained on train_file as it was then, and its content has changed since; pass "
                f"--resume_changed_settings {TRAIN_FILE_CONTENT} to train on it as it is now from the resumed step "
                "on, or start a new run"
            )
        changeable = _changeable(name, old, value)
        if name not in allowed or not changeable:
            hint = (
                f"pass --{name} {_as_flag(old)} to resume as it was, or --resume_changed_settings {name} to change "
                "it from the resumed step on"
                if changeable
                else "start a new run in a new output_dir or pass --overwrite_output_dir true"
            )
            raise UsageError(f"{where} was trained with {name}={old!r}, this run asks for {name}={value!r}; {hint}")
        changed.append(name)
    return changed
