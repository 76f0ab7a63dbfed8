"""scripts/gpu_check.py keeps working: its --smoke mode trains 2 CPU steps of a small encoder."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_gpu_check_smoke() -> None:
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "gpu_check.py"),
        "--smoke",
        "--gradcache_mini_batch_size",
        "3",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sentences/s" in proc.stdout
    assert "GradCache mini-batches of 3" in proc.stdout
