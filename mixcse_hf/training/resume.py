"""Where a run starts: a fresh ``output_dir``, the last complete checkpoint in it, or an explicit one.

The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG states, then
``trainer_state.json``), so a process killed mid-save leaves a partial folder; it must never be resumed.
"""

from __future__ import annotations

import json
import logging
import os
import re

from mixcse_hf.errors import UsageError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
TRAINER_STATE = "trainer_state.json"


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` is not a complete Trainer checkpoint, or ``None`` when it is."""
    if not any(os.path.isfile(os.path.join(path, name)) for name in WEIGHT_FILES):
        return "no model weights"
    if not os.path.isfile(os.path.join(path, "optimizer.pt")):
        return "no optimizer state"
    try:
        with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        return f"no {TRAINER_STATE} (written last, so the save was interrupted)"
    except json.JSONDecodeError:
        return f"a truncated {TRAINER_STATE}"
    return None


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The ``checkpoint-N`` folder with the highest N that is complete; partial ones are logged and skipped."""
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_PATTERN.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("Skipping incomplete checkpoint %s: %s", path, problem)
    return None


def resolve_resume_checkpoint(
    output_dir: str, resume_from_checkpoint: str | None, overwrite_output_dir: bool, do_train: bool
) -> str | None:
    """Protect an existing ``output_dir``: resume its last complete checkpoint, or refuse unless told to
    overwrite. An explicit ``resume_from_checkpoint`` must be a complete checkpoint."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir!r} is a file; choose a directory path")
    if resume_from_checkpoint is not None:
        if not os.path.isdir(resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {resume_from_checkpoint!r} is not a directory")
        if problem := checkpoint_problem(resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {resume_from_checkpoint!r} is incomplete ({problem})")
        return resume_from_checkpoint
    if not do_train or overwrite_output_dir or not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None
    last = last_complete_checkpoint(output_dir)
    if last is None:
        raise UsageError(
            f"output_dir {output_dir!r} is not empty and holds no complete checkpoint to resume; pass "
            "--overwrite_output_dir true to train into it anyway, or choose another output_dir"
        )
    logger.info("Resuming from %s (pass --overwrite_output_dir true to start afresh)", last)
    return last
