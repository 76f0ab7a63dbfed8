"""Where a run starts: a fresh ``output_dir``, the last complete checkpoint of the same run in it, or an explicit
checkpoint; and whether the run there is already complete.

The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG states, then
``trainer_state.json``), and the run identity (:mod:`mixcse_hf.training.identity`) is copied in last, so a
process killed mid-save leaves a partial folder; it is never resumed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from mixcse_hf.errors import UsageError
from mixcse_hf.training.identity import check_same_run, new_identity, read_identity

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
TRAINER_STATE = "trainer_state.json"


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` is not a complete Trainer checkpoint (weights, optimizer, scheduler, RNG state and a parseable
    ``trainer_state.json``), or ``None`` when it is."""
    if not any(os.path.isfile(os.path.join(path, name)) for name in WEIGHT_FILES):
        return "no model weights"
    for name, what in (("optimizer.pt", "optimizer"), ("scheduler.pt", "learning-rate scheduler")):
        if not os.path.isfile(os.path.join(path, name)):
            return f"no {what} state ({name})"
    if not any(name.startswith("rng_state") and name.endswith(".pth") for name in os.listdir(path)):
        return "no RNG state (rng_state*.pth): dropout and data order could not continue where they stopped"
    try:
        with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        return f"no {TRAINER_STATE} (written last, so the save was interrupted)"
    except json.JSONDecodeError:
        return f"a truncated {TRAINER_STATE}"
    return None


def checkpoint_step(path: str) -> int:
    with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as handle:
        return int(json.load(handle).get("global_step", 0))


def last_complete_checkpoint(output_dir: str, run_id: str | None = None) -> str | None:
    """The ``checkpoint-N`` folder with the highest N that is complete (and, given ``run_id``, belongs to that
    run); partial ones are logged and skipped."""
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_PATTERN.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        problem = checkpoint_problem(path)
        if problem is None and run_id is not None and (read_identity(path) or {}).get("run_id") != run_id:
            problem = "it belongs to another run (or its save was interrupted before the run identity)"
        if problem is None:
            return path
        logger.warning("Skipping checkpoint %s: %s", path, problem)
    return None


@dataclass
class RunPlan:
    """How a training run starts.

    Attributes:
        identity: the run identity to record (a new one, or the resumed run's with any allowed changes).
        resume_from: the checkpoint to resume, or ``None``.
        clear_other_runs: the output directory may hold other runs' checkpoints: removed when the run starts.
        complete: the output directory holds this very run, finished: nothing to train.
        changed: settings changed on resume (allowed by ``resume_changed_settings``).
    """

    identity: dict[str, Any]
    resume_from: str | None = None
    clear_other_runs: bool = False
    complete: bool = False
    changed: list[str] = field(default_factory=list)


def _resumed_identity(saved: dict[str, Any], settings: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    return {**saved, "settings": settings, "completed": saved.get("completed", False) and not changed}


def plan_run(
    output_dir: str,
    resume_from_checkpoint: str | None,
    overwrite_output_dir: bool,
    settings: dict[str, Any],
    allowed_changes: list[str] | None = None,
) -> RunPlan:
    """Protect ``output_dir`` (one run per directory) and decide where the run starts. Reads only (the caller
    has checked that ``output_dir`` can be written, :func:`mixcse_hf.paths.check_output_dir`); every refusal is a
    one-line :class:`UsageError`."""
    allowed = list(allowed_changes or [])
    # Our own transient files (the lock, write checks of other processes, a half-written identity) are no run.
    has_files = os.path.isdir(output_dir) and any(not name.startswith(".mixcse") for name in os.listdir(output_dir))
    if resume_from_checkpoint is not None:
        if not os.path.isdir(resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {resume_from_checkpoint!r} is not a directory")
        if problem := checkpoint_problem(resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {resume_from_checkpoint!r} is incomplete ({problem})")
        saved = read_identity(resume_from_checkpoint)
        if saved is None:
            raise UsageError(
                f"resume_from_checkpoint {resume_from_checkpoint!r} records no run settings (mixcse_run.json), so "
                "resuming could mix two runs; resume a checkpoint written by this version, or start a new run"
            )
        changed = check_same_run(saved["settings"], settings, allowed, f"checkpoint {resume_from_checkpoint!r}")
        current = read_identity(output_dir) if has_files else None
        other_run = has_files and (current is None or current.get("run_id") != saved["run_id"])
        if other_run and not overwrite_output_dir:
            raise UsageError(
                f"output_dir {output_dir!r} holds another run; resume into the checkpoint's own output_dir, choose "
                "an empty one, or pass --overwrite_output_dir true"
            )
        return RunPlan(_resumed_identity(saved, settings, changed), resume_from_checkpoint, other_run, False, changed)
    if overwrite_output_dir or not has_files:
        return RunPlan(new_identity(settings), clear_other_runs=has_files)
    saved = read_identity(output_dir)
    if saved is None:
        raise UsageError(
            f"output_dir {output_dir!r} is not empty and holds no mixcse_hf run to resume; pass "
            "--overwrite_output_dir true to replace its run, or choose another output_dir"
        )
    changed = check_same_run(saved["settings"], settings, allowed, f"the run in output_dir {output_dir!r}")
    identity = _resumed_identity(saved, settings, changed)
    if identity["completed"]:
        return RunPlan(identity, complete=True)
    last = last_complete_checkpoint(output_dir, saved["run_id"])
    if last is not None:
        logger.info("Resuming from %s (pass --overwrite_output_dir true to start afresh)", last)
    return RunPlan(identity, last, clear_other_runs=True, changed=changed)
