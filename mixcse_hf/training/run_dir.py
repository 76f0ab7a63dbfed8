"""The run directory: the one owner of every file a training run keeps beside its model, and of its lock.

``OUTPUT_DIR`` holds the model (written by :func:`mixcse_hf.hub.export.export_checkpoint` through the trainer's
saves, once per saved folder) and these records:

- :data:`RUN_FILE` ``mixcse_run.json``: the run record (run id, the settings that define the run, the precision,
  the start model's scores, ``completed``), copied into every checkpoint with the step and training time;
- :data:`~mixcse_hf.training.run_lock.LOCK_FILE` ``.mixcse.lock``: an OS file lock held while a run trains here,
  released by the kernel when its process ends, however it ends (:mod:`~mixcse_hf.training.run_lock`, which
  imports no torch, so that a start is refused before loading it);
- :data:`RESOLVED_CONFIG_FILE` ``run_config.yaml``: every argument's final value;
- :data:`RESULTS_FILE` ``sts_results.json``: the start and final STS-B scores and the training speed;
- :data:`CARD_DATA_FILE` ``mixcse_card.json``: the model card's inputs, so a push re-renders it for a Hub id;
- :data:`PLOT_FILE` ``training_curves.png``;
- ``checkpoint-N/`` folders (transformers' ``PREFIX_CHECKPOINT_DIR``), each with the Trainer's
  ``trainer_state.json`` written last.

Every JSON file is written atomically (a crash leaves the old file or the new one). What a push uploads is the
folder less :data:`UPLOAD_IGNORE_PATTERNS`, derived from these names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from dataclasses import asdict
from typing import Any

import yaml
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mixcse_hf.hub.card import ModelCardInfo
from mixcse_hf.output_files import read_json, write_json_atomically
from mixcse_hf.training.run_lock import TRANSIENT_PREFIX

logger = logging.getLogger(__name__)

RUN_FILE = "mixcse_run.json"
RESOLVED_CONFIG_FILE = "run_config.yaml"
RESULTS_FILE = "sts_results.json"
CARD_DATA_FILE = "mixcse_card.json"
PLOT_FILE = "training_curves.png"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
RNG_STATE_PATTERN = "rng_state*.pth"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")

UPLOAD_IGNORE_PATTERNS = [
    # the Trainer's resume state and metrics files (train_results.json, all_results.json…)
    *(f"{PREFIX_CHECKPOINT_DIR}-*", OPTIMIZER_NAME, SCHEDULER_NAME, SCALER_NAME, RNG_STATE_PATTERN),
    *(TRAINER_STATE_NAME, TRAINING_ARGS_NAME, "*_results.json"),
    # the run's records: local paths and values read from the environment live there
    *(RUN_FILE, RESOLVED_CONFIG_FILE, RESULTS_FILE, CARD_DATA_FILE, PLOT_FILE),
    *("_*", ".*"),
]
"""What a push never uploads; everything else in a saved folder is the model: weights, config, tokenizer, the
remote-code file, the sentence-transformers files and the card."""


def has_run_files(output_dir: str) -> bool:
    """Whether ``output_dir`` holds anything but our transient files."""
    return os.path.isdir(output_dir) and any(not name.startswith(TRANSIENT_PREFIX) for name in os.listdir(output_dir))


# The run record


def read_run_record(folder: str) -> dict[str, Any] | None:
    """The run record of ``folder`` (an output_dir or a checkpoint), or None when it has none (or half of one)."""
    record = read_json(os.path.join(folder, RUN_FILE))
    return record if isinstance(record, dict) else None


def write_run_record(folder: str, record: dict[str, Any]) -> None:
    write_json_atomically(os.path.join(folder, RUN_FILE), record, indent=2, default=str)


def recorded_run_id(output_dir: str) -> str | None:
    return (read_run_record(output_dir) or {}).get("run_id") if os.path.isdir(output_dir) else None


# Checkpoints


def checkpoint_folder(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")


def checkpoint_folder_step(path: str) -> int | None:
    """N of a ``checkpoint-N`` folder's path, None for any other path."""
    match = _CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path))) if path else None
    return int(match.group(1)) if match else None


def checkpoint_folders(output_dir: str) -> list[str]:
    """The ``checkpoint-N`` folders of ``output_dir``, by ascending N."""
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT_NAME.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    return [os.path.join(output_dir, name) for _, name in steps]


def read_trainer_state(folder: str) -> dict[str, Any] | None:
    """The Trainer's ``trainer_state.json`` of ``folder``, or None when it is missing or truncated."""
    state = read_json(os.path.join(folder, TRAINER_STATE_NAME))
    return state if isinstance(state, dict) else None


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` is not a complete Trainer checkpoint (weights, optimizer, scheduler, RNG state and a parseable
    ``trainer_state.json``, which the Trainer writes last), or ``None`` when it is."""
    if not any(os.path.isfile(os.path.join(path, name)) for name in WEIGHT_FILES):
        return "no model weights"
    for name, what in ((OPTIMIZER_NAME, "optimizer"), (SCHEDULER_NAME, "learning-rate scheduler")):
        if not os.path.isfile(os.path.join(path, name)):
            return f"no {what} state ({name})"
    if not any(name.startswith("rng_state") and name.endswith(".pth") for name in os.listdir(path)):
        return f"no RNG state ({RNG_STATE_PATTERN}): dropout and data order could not continue where they stopped"
    if not os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
        return f"no {TRAINER_STATE_NAME} (written last, so the save was interrupted)"
    if read_trainer_state(path) is None:
        return f"a truncated {TRAINER_STATE_NAME}"
    return None


def checkpoint_step(path: str) -> int:
    return int((read_trainer_state(path) or {}).get("global_step", 0))


def last_complete_checkpoint(output_dir: str, run_id: str | None = None) -> str | None:
    """The complete ``checkpoint-N`` folder with the highest N (of run ``run_id`` when given); partial ones are
    logged and skipped. A checkpoint without the run record is a partial save: the record is copied in last."""
    if not os.path.isdir(output_dir):
        return None
    for path in reversed(checkpoint_folders(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None and run_id is not None and (read_run_record(path) or {}).get("run_id") != run_id:
            problem = "it belongs to another run (or its save was interrupted before the run record)"
        if problem is None:
            return path
        logger.warning("Skipping checkpoint %s: %s", path, problem)
    return None


def remove_other_runs_checkpoints(output_dir: str, keep_run_id: str) -> None:
    """Delete the checkpoint folders whose run record is not run ``keep_run_id``'s."""
    for path in checkpoint_folders(output_dir):
        if (read_run_record(path) or {}).get("run_id") != keep_run_id:
            shutil.rmtree(path, ignore_errors=True)


def remove_other_run(output_dir: str, keep_run_id: str) -> None:
    """Delete everything another run left in ``output_dir`` (model files, records, checkpoints), keeping only run
    ``keep_run_id``'s record and checkpoints and our transient files (the lock)."""
    remove_other_runs_checkpoints(output_dir, keep_run_id)
    kept = {RUN_FILE, *(os.path.basename(path) for path in checkpoint_folders(output_dir))}
    for name in os.listdir(output_dir):
        if name in kept or name.startswith(TRANSIENT_PREFIX):
            continue
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


# The run's other records


def write_resolved_config(output_dir: str, values: dict[str, Any]) -> None:
    with open(os.path.join(output_dir, RESOLVED_CONFIG_FILE), "w", encoding="utf-8") as handle:
        yaml.safe_dump(values, handle, sort_keys=True)


def read_resolved_config(output_dir: str) -> dict[str, Any]:
    with open(os.path.join(output_dir, RESOLVED_CONFIG_FILE), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def write_results(output_dir: str, results: dict[str, Any]) -> None:
    write_json_atomically(os.path.join(output_dir, RESULTS_FILE), results, indent=2)


def read_results(output_dir: str) -> dict[str, Any] | None:
    results = read_json(os.path.join(output_dir, RESULTS_FILE))
    return results if isinstance(results, dict) else None


def write_card_data(folder: str, card: ModelCardInfo) -> None:
    write_json_atomically(os.path.join(folder, CARD_DATA_FILE), asdict(card), indent=2)


def read_card_data(folder: str) -> ModelCardInfo | None:
    values = read_json(os.path.join(folder, CARD_DATA_FILE))
    return ModelCardInfo(**values) if isinstance(values, dict) else None


def plot_path(output_dir: str) -> str:
    return os.path.join(output_dir, PLOT_FILE)


def trainer_state_path(folder: str) -> str:
    return os.path.join(folder, TRAINER_STATE_NAME)


def remove_training_arguments_pickle(folder: str) -> None:
    """The Trainer pickles its arguments into every save (``training_args.bin``); run_config.yaml records them as
    text, and a pickle is code to whoever loads it."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, TRAINING_ARGS_NAME))
