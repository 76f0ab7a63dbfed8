"""benchmarks/ablation.py: a miniature grid (tiny model, 2 steps, one seed) runs, resumes, adds the 7-task
average of selected cells and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT


def table_rows(text: str, signal: bool = False) -> dict[str, list[str]]:
    """cell -> its markdown row split on " | " (the last item keeps the closing bar), for the results table
    (``signal=False``) or the training-signal table after it; no header."""
    results, _, signal_part = text.partition("Training signal")
    lines = (signal_part if signal else results).splitlines()
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines if line.startswith("| ")}
    rows.pop("cell")
    return rows


def seven_task_average(run_dir: Path) -> float:
    return json.loads((run_dir / "sts7_results.json").read_text())["average"]


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
        "precision": "fp32",
    }
    config.write_text(yaml.safe_dump(values), encoding="utf-8")
    command = [
        sys.executable, str(REPO_ROOT / "benchmarks" / "ablation.py"), "--config", str(config),
        "--output_dir", str(tmp_path / "grid"), "--seeds", "1", "--lambdas", "0.1", "0.2", "--max_steps", "2",
    ]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    table = (tmp_path / "grid" / "results.md").read_text()
    for cell in ("SimCSE", "MixCSE λ=0.1", "MixCSE λ=0.2", "hardest partner", "adaptive lambda", "paired"):
        assert cell in table
    rows = table_rows(table)
    assert len(rows) == 11  # SimCSE + 2 lambdas + 8 options at the best lambda
    assert (tmp_path / "grid" / "gradient_signal.png").is_file()
    assert (tmp_path / "grid" / "ablation.png").is_file()
    runs = json.loads((tmp_path / "grid" / "runs.json").read_text())
    assert len(runs) == 11 and runs["SimCSE"]["1"]["dev"] == float(rows["SimCSE"][1].split(" ± ")[0])
    assert all(row[-1] == "0 |" for row in rows.values())  # n7: no 7-task evaluation asked for yet
    assert rows["MixCSE λ=0.2"][4:6] == ["+0.00", "+0.00"]  # Δ dev / test against the reference λ
    signal = table_rows(table, signal=True)
    assert signal.keys() == rows.keys()
    assert float(signal["SimCSE"][5]) == 0.0 < float(signal["MixCSE λ=0.2"][5])  # mixed-negative gradient share

    again = subprocess.run([*command, "--seven_task", "--cells", "SimCSE"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "] 7-task evaluation" in again.stdout
    assert "--mix_lambda" not in again.stdout  # every run was already finished: nothing retrained
    rows = table_rows(again.stdout)
    simcse_avg7 = rows["SimCSE"][3].split(" ± ")[0]
    assert float(simcse_avg7) == pytest.approx(seven_task_average(tmp_path / "grid" / "SimCSE" / "seed1"), abs=0.01)
    assert rows["SimCSE"][-1] == "1 |" and rows["MixCSE λ=0.1"][-1] == "0 |"  # n7: only the selected cell

    other_budget = subprocess.run(command[:-2], capture_output=True, text=True, timeout=900)  # no --max_steps
    assert other_budget.returncode != 0
    assert "trained with max_steps 2, this grid asks for -1" in other_budget.stderr
