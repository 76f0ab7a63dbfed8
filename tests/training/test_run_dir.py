"""The run directory's lock: one holder at a time, however starters race, and nothing left behind."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub.utils import filter_repo_objects

from mixcse_hf.errors import UsageError
from mixcse_hf.training import run_dir
from mixcse_hf.training.run_lock import LOCK_FILE, locked

STARTER = """
import json, sys, time
from mixcse_hf.errors import UsageError
from mixcse_hf.training.run_lock import locked

out, record, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < start:
    pass
held = []
while len(held) < 3:
    try:
        with locked(out):
            entered = time.monotonic_ns()
            time.sleep(0.02)  # a pause while holding: a second holder would overlap it
            held.append((entered, time.monotonic_ns()))
    except UsageError:
        time.sleep(0.001)
with open(record, "w") as handle:
    json.dump(held, handle)
"""


def test_racing_starters_never_hold_the_lock_together(tmp_path: Path) -> None:
    """Four processes start at the same instant, on a lock file a killed holder left, and each takes the lock three
    times, retrying when refused: no two holding intervals overlap (CLOCK_MONOTONIC is system-wide), and the lock
    file is gone at the end."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("a file of the run")  # the directory is not removed between holders
    (out / LOCK_FILE).write_text("")  # left by a holder killed before it could remove it: nothing to take over
    start = time.time() + 2
    records = [tmp_path / f"held-{index}.json" for index in range(4)]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    starters = [
        subprocess.Popen([sys.executable, "-c", STARTER, str(out), str(record), str(start)], env=environment)
        for record in records
    ]
    assert [starter.wait(timeout=120) for starter in starters] == [0, 0, 0, 0]
    intervals = sorted(tuple(interval) for record in records for interval in json.loads(record.read_text()))
    assert len(intervals) == 12
    assert all(previous[1] <= following[0] for previous, following in itertools.pairwise(intervals))
    assert sorted(os.listdir(out)) == ["keep.txt"]


def test_a_held_lock_refuses_and_a_created_empty_directory_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with locked(str(out)):
        assert (out / LOCK_FILE).exists()
        with pytest.raises(UsageError, match="is in use by another run"), locked(str(out)):
            pass
    assert not out.exists()  # created here and nothing written: removed with the lock


def test_no_run_record_is_uploaded() -> None:
    """Every file a run keeps beside its model, and the Trainer's resume state, is in the upload ignore list."""
    records = [run_dir.RUN_FILE, run_dir.RESOLVED_CONFIG_FILE, run_dir.RESULTS_FILE, run_dir.CARD_DATA_FILE]
    records += [run_dir.PLOT_FILE, LOCK_FILE, "trainer_state.json", "train_results.json", "all_results.json"]
    records += ["checkpoint-12/model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_1.pth"]
    model_files = ["model.safetensors", "config.json", "README.md", "1_Pooling/config.json", "tokenizer.json"]
    uploaded = set(filter_repo_objects([*records, *model_files], ignore_patterns=run_dir.UPLOAD_IGNORE_PATTERNS))
    assert uploaded == set(model_files)
