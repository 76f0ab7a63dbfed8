"""Reading what a run logged: the Trainer's ``log_history`` (which entries are evaluations, what they measured)."""

from __future__ import annotations

EVAL_PREFIX = "eval_"
BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second")
"""Evaluation entries the Trainer or we add that are timings, not measurements of the model."""


def evaluation_metrics(entry: dict) -> dict[str, float]:
    """The measurements of one log entry, without the ``eval_`` prefix (empty for a training entry)."""
    return {
        key[len(EVAL_PREFIX) :]: value
        for key, value in entry.items()
        if key.startswith(EVAL_PREFIX) and key[len(EVAL_PREFIX) :] not in BOOKKEEPING
    }


def evaluation_points(log_history: list[dict]) -> list[dict]:
    """The evaluation entries of ``log_history``, in order."""
    return [entry for entry in log_history if evaluation_metrics(entry)]
