"""benchmarks/ablation.py: a miniature grid (tiny model, 2 steps, one seed) runs, resumes and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_ablation_grid_runs_resumes_and_reports(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    values = {
        "model_name_or_path": tiny_model_dir,
        "train_file": str(tiny_corpus),
        "senteval_dir": str(tiny_senteval),
        "per_device_train_batch_size": 4,
        "do_train": True,
        "do_eval": True,
        "logging_steps": 1,
        "report_to": "none",
    }
    config.write_text(yaml.safe_dump(values), encoding="utf-8")
    command = [
        sys.executable, str(REPO_ROOT / "benchmarks" / "ablation.py"), "--config", str(config),
        "--output_dir", str(tmp_path / "grid"), "--seeds", "1", "--lambdas", "0.1", "0.3", "--max_steps", "2",
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    table = (tmp_path / "grid" / "results.md").read_text()
    for cell in ("SimCSE", "MixCSE λ=0.1", "MixCSE λ=0.3", "hardest partner", "adaptive lambda", "paired"):
        assert cell in table
    assert table.count("\n| ") == 12  # header + SimCSE + 2 lambdas + 8 options at the best lambda
    assert (tmp_path / "grid" / "gradient_signal.png").is_file()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    assert "seed 1]" not in again.stdout  # every run was already finished: nothing retrained
