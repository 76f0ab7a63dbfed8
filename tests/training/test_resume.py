"""Crash-safe resume, non-finite losses and reproducibility."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mixcse_hf.errors import UsageError
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.training.resume import plan_run
from mixcse_hf.training.run_dir import checkpoint_problem, last_complete_checkpoint, read_run_record
from run_mixcse import main
from tests.conftest import (
    REPO_ROOT,
    kill_after_checkpoint,
    logged_losses,
    max_weight_difference,
    resume_config,
    train_tiny,
)


def test_partial_checkpoint_is_never_resumed(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out")
    assert checkpoint_problem(str(out / "checkpoint-2")) is None
    partial = out / "checkpoint-9"
    shutil.copytree(out / "checkpoint-2", partial)
    (partial / "trainer_state.json").unlink()
    assert last_complete_checkpoint(str(out)) == str(out / "checkpoint-2")
    (partial / "trainer_state.json").write_text('{"log_history": [', encoding="utf-8")
    assert "truncated" in checkpoint_problem(str(partial))
    assert last_complete_checkpoint(str(out)) == str(out / "checkpoint-2")
    with pytest.raises(UsageError, match="is incomplete"):
        plan_run(str(out), str(partial), overwrite_output_dir=False, settings={})


def test_sigkill_then_resume_matches_an_uninterrupted_run(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path
) -> None:
    """Kill a run (SIGKILL) right after a checkpoint, resume it, and compare with a run that never stopped."""
    config = resume_config(tmp_path, tiny_model_dir, tiny_corpus)
    reference = tmp_path / "reference"
    assert main([str(config), "--output_dir", str(reference)]) == 0

    crashed = tmp_path / "crashed"
    kill_after_checkpoint(config, crashed, 6)
    assert not (crashed / "model.safetensors").exists()
    assert main([str(config), "--output_dir", str(crashed)]) == 0  # finds the last complete checkpoint

    expected, resumed = logged_losses(reference), logged_losses(crashed)
    assert max(resumed) == max(expected) == 30
    for step in range(max(resumed) - 20, 31):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), f"loss differs at step {step}"
    difference = max_weight_difference(reference, crashed)
    print(f"resumed vs uninterrupted: max abs weight difference {difference:.3g}")
    assert difference <= 1e-5


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    calls = {"count": 0}
    original = MixCSELoss.loss_from_logits

    def failing_from_step_5(logits: torch.Tensor) -> torch.Tensor:
        calls["count"] += 1
        loss = original(logits)
        return loss * float("nan") if calls["count"] >= 5 else loss

    monkeypatch.setattr(MixCSELoss, "loss_from_logits", staticmethod(failing_from_step_5))
    config = resume_config(tmp_path, tiny_model_dir, tiny_corpus, save_steps=2)
    out = tmp_path / "out"
    assert main([str(config), "--output_dir", str(out)]) == 3
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: loss is nan at step 5")
    assert f"resume {out / 'checkpoint-4'} with --learning_rate" in message
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoint_problem(str(out / "checkpoint-4")) is None
    assert not (out / "model.safetensors").exists()


def test_same_seed_same_loss_curve(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    config = resume_config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=6, save_strategy="no")
    curves = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main([str(config), "--output_dir", str(tmp_path / name), "--seed", seed]) == 0
        curves.append(logged_losses(tmp_path / name))
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_only_safetensors_weights(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """Weights are safetensors; the only torch-format files are the Trainer's resume state in checkpoints."""
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out")
    assert list(out.rglob("*.bin")) == []
    assert {p.name for p in out.rglob("*.safetensors")} == {"model.safetensors"}
    torch_files = {p.relative_to(out).parts[0] for p in out.rglob("*.pt*")}
    assert torch_files == {"checkpoint-1", "checkpoint-2"}


def test_ctrl_c_stops_with_a_checkpoint_and_one_line(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C (SIGINT) during training: the run saves a checkpoint at the step it is in, exits 130 with one line
    naming it and no traceback, and the same command resumes from it."""
    config = resume_config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=60, save_steps=100)
    out = tmp_path / "out"
    log = tmp_path / "stderr.txt"
    command = [sys.executable, str(REPO_ROOT / "run_mixcse.py"), str(config), "--output_dir", str(out)]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO_ROOT)
        deadline = time.monotonic() + 600  # a guard against a hung run, generous for a loaded machine
        while "per step over steps" not in log.read_text() and process.poll() is None:  # training is under way
            assert time.monotonic() < deadline, "training did not start within 10 minutes"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    text = log.read_text()
    assert "Traceback" not in text
    line = r"interrupted: stopped at step (\d+); (.*checkpoint-\1) holds step \1: the same command resumes the run"
    line += " from it"
    stopped = re.fullmatch(line, text.strip().splitlines()[-1])
    assert stopped, text[-2000:]
    assert checkpoint_problem(stopped.group(2)) is None
    caplog.set_level("INFO")
    assert main([str(config), "--output_dir", str(out)]) == 0
    assert f"Resuming from {stopped.group(2)}" in caplog.text
    assert max(logged_losses(out)) == 60


def test_a_resumed_run_reports_the_whole_run_too(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """After a resume, the summary's speed and time of this part are joined by the whole run's: the training time
    its checkpoint recorded plus this part's, over all of the run's rows."""
    config = resume_config(tmp_path, tiny_model_dir, tiny_corpus)
    out = tmp_path / "out"
    kill_after_checkpoint(config, out, 6)
    capsys.readouterr()
    assert main([str(config), "--output_dir", str(out)]) == 0
    results = json.loads((out / "sts_results.json").read_text())
    whole, part = results["whole_run"], results["train"]
    recorded = read_run_record(str(out / f"checkpoint-{whole['resumed_at_step']}"))["train_seconds"]
    assert recorded > 0
    assert whole["train_runtime"] == pytest.approx(recorded + part["train_runtime"], abs=0.1)
    assert whole["train_samples_per_second"] == pytest.approx(30 * 4 / whole["train_runtime"], rel=1e-2)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("training:")]
    assert printed == [
        f"training: {part['train_samples_per_second']:.1f} sentences/s, {part['train_runtime']:.0f} s this part "
        f"(resumed at step {whole['resumed_at_step']}); whole run: {whole['train_samples_per_second']:.1f} "
        f"sentences/s, {whole['train_runtime']:.0f} s, peak RSS {results['peak_rss_mb']:.0f} MB"
    ]
