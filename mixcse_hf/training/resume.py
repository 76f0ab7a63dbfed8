"""Where a run starts: a fresh ``output_dir``, the last complete checkpoint of the same run in it, or an explicit
checkpoint; and whether the run there is already complete.

The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG states, then
``trainer_state.json``), and the run record (:mod:`mixcse_hf.training.run_dir`) is copied in last, so a process
killed mid-save leaves a partial folder; it is never resumed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from mixcse_hf.errors import UsageError
from mixcse_hf.training.identity import check_same_run, keep_resumed_values, new_identity
from mixcse_hf.training.run_dir import (
    RUN_FILE,
    checkpoint_problem,
    checkpoint_step,
    has_run_files,
    last_complete_checkpoint,
    read_run_record,
)

logger = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """How a training run starts.

    Attributes:
        identity: the run identity to record (a new one, or the resumed run's with any allowed changes).
        resume_from: the checkpoint to resume, or ``None``.
        clear_other_runs: the output directory may hold other runs' checkpoints: removed when the run starts.
        replace_other_run: the output directory holds another run (overwritten): everything it left goes when the
            run starts, model files included, so that nothing of it is loaded or pushed with the new run.
        complete: the output directory holds this very run, finished: nothing to train.
        changed: settings changed on resume (allowed by ``resume_changed_settings``).
    """

    identity: dict[str, Any]
    resume_from: str | None = None
    clear_other_runs: bool = False
    replace_other_run: bool = False
    complete: bool = False
    changed: list[str] = field(default_factory=list)


def _resumed_identity(saved: dict[str, Any], settings: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    return {**saved, "settings": settings, "completed": saved.get("completed", False) and not changed}


def check_changes_train(
    changed: list[str], resumed_step: int, settings: dict[str, Any], saved: dict[str, Any], where: str
) -> None:
    """Refuse changed settings that would train nothing: the resumed step is already the end of the run. Resuming
    there would only relabel the run (and the Trainer would take one step past ``max_steps``)."""
    if not changed:
        return
    if settings["max_steps"] > 0:
        at_end = resumed_step >= settings["max_steps"]
    else:  # epoch-based: the run ends where it ended unless it gets more epochs
        at_end = saved.get("max_steps", -1) <= 0 and settings["num_train_epochs"] <= saved["num_train_epochs"]
    if at_end:
        raise UsageError(
            f"{where} has trained to its end (step {resumed_step}): changing {', '.join(changed)} would train "
            "nothing; raise max_steps too (--max_steps N --resume_changed_settings max_steps "
            f"{' '.join(changed)}), or start a new run"
        )


def plan_run(
    output_dir: str,
    resume_from_checkpoint: str | None,
    overwrite_output_dir: bool,
    settings: dict[str, Any],
    allowed_changes: list[str] | None = None,
) -> RunPlan:
    """Protect ``output_dir`` (one run per directory) and decide where the run starts. Reads only (the caller
    has checked that ``output_dir`` can be written, :func:`mixcse_hf.output_files.check_output_dir`); every refusal is a
    one-line :class:`UsageError`."""
    allowed = list(allowed_changes or [])
    has_files = has_run_files(output_dir)
    if resume_from_checkpoint is not None:
        if not os.path.isdir(resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {resume_from_checkpoint!r} is not a directory")
        if problem := checkpoint_problem(resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {resume_from_checkpoint!r} is incomplete ({problem})")
        saved = read_run_record(resume_from_checkpoint)
        if saved is None:
            raise UsageError(
                f"resume_from_checkpoint {resume_from_checkpoint!r} records no run settings ({RUN_FILE}), so "
                "resuming could mix two runs; resume a checkpoint written by this version, or start a new run"
            )
        where = f"checkpoint {resume_from_checkpoint!r}"
        settings = keep_resumed_values(saved["settings"], settings)
        changed = check_same_run(saved["settings"], settings, allowed, where)
        current = read_run_record(output_dir) if has_files else None
        other_run = has_files and (current is None or current.get("run_id") != saved["run_id"])
        if other_run and not overwrite_output_dir:
            raise UsageError(
                f"output_dir {output_dir!r} holds another run; resume into the checkpoint's own output_dir, choose "
                "an empty one, or pass --overwrite_output_dir true"
            )
        check_changes_train(changed, checkpoint_step(resume_from_checkpoint), settings, saved["settings"], where)
        identity = _resumed_identity(saved, settings, changed)
        return RunPlan(identity, resume_from_checkpoint, other_run, other_run, changed=changed)
    if overwrite_output_dir or not has_files:
        return RunPlan(new_identity(settings), clear_other_runs=has_files, replace_other_run=has_files)
    saved = read_run_record(output_dir)
    if saved is None:
        raise UsageError(
            f"output_dir {output_dir!r} is not empty and holds no mixcse_hf run to resume; pass "
            "--overwrite_output_dir true to replace its run, or choose another output_dir"
        )
    where = f"the run in output_dir {output_dir!r}"
    settings = keep_resumed_values(saved["settings"], settings)
    changed = check_same_run(saved["settings"], settings, allowed, where)
    identity = _resumed_identity(saved, settings, changed)
    if identity["completed"]:
        return RunPlan(identity, complete=True)
    last = last_complete_checkpoint(output_dir, saved["run_id"])
    if saved.get("completed") and last is None:
        raise UsageError(
            f"{where} is complete and kept no checkpoint to continue from (save_strategy no): changing "
            f"{', '.join(changed)} would train it again from the start; start a new run in another output_dir or "
            "pass --overwrite_output_dir true"
        )
    if last is not None:
        check_changes_train(changed, checkpoint_step(last), settings, saved["settings"], where)
        logger.info("Resuming from %s (pass --overwrite_output_dir true to start afresh)", last)
    # Without a checkpoint the run starts again: whatever an earlier start left goes.
    return RunPlan(identity, last, clear_other_runs=True, replace_other_run=last is None, changed=changed)
