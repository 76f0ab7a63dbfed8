"""Run integrity: a resumed run is the run it claims to be, one run per output_dir, and a finished run is not
trained again (the cases of the "Run integrity" issue, each reproduced on the tiny model)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mixcse_hf.errors import UsageError
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training.identity import check_same_run
from mixcse_hf.training.resume import plan_run
from mixcse_hf.training.run_dir import RUN_FILE
from mixcse_hf.training.run_lock import LOCK_FILE, locked
from run_mixcse import main
from tests.conftest import REPO_ROOT, SENTENCES, train_tiny


def _config(tmp_path: Path, model_dir: str, corpus: Path, **extra: object) -> str:
    values = {
        "model_name_or_path": model_dir,
        "train_file": str(corpus),
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "max_seq_length": 16,
        "max_steps": 6,
        "save_strategy": "steps",
        "save_steps": 2,
        "logging_steps": 1,
        "report_to": "none",
        "seed": 5,
        "disable_tqdm": True,
        "precision": "fp32",
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def _state(out: Path) -> dict:
    return json.loads((out / "trainer_state.json").read_text())


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("checkpoint-*"))


def _run_id(path: Path) -> str:
    return json.loads((path / RUN_FILE).read_text())["run_id"]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def nan_from_call(monkeypatch: pytest.MonkeyPatch):
    """``nan_from_call(n)``: the MixCSE loss turns NaN from its n-th call on (a run that stops with exit 3)."""

    def arm(first_bad_call: int) -> None:
        calls = {"count": 0}
        original = MixCSELoss.loss_from_logits

        def failing(logits: torch.Tensor) -> torch.Tensor:
            calls["count"] += 1
            loss = original(logits)
            return loss * float("nan") if calls["count"] >= first_bad_call else loss

        monkeypatch.setattr(MixCSELoss, "loss_from_logits", staticmethod(failing))

    return arm


def test_overwrite_leaves_nothing_of_the_old_run_to_resume(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, nan_from_call, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Case 1: the old run's checkpoints go when a new run overwrites; a crashed new run is resumed from its own
    checkpoint (and names it as the last good one), never the old run's."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus), tmp_path / "out"
    assert main([config]) == 0
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    old_run = _run_id(out)

    nan_from_call(3)  # the new run stops at step 3, before the old run's step numbers
    assert main([config, "--overwrite_output_dir", "true", "--seed", "9"]) == 3
    assert _checkpoints(out) == ["checkpoint-2"]
    new_run = _run_id(out)
    assert new_run != old_run and _run_id(out / "checkpoint-2") == new_run
    assert f"resume {out / 'checkpoint-2'} with" in capsys.readouterr().err

    monkeypatch.undo()
    assert main([config, "--seed", "9"]) == 0  # a plain re-run resumes the new run's checkpoint
    assert _state(out)["global_step"] == 6
    assert json.loads((out / RUN_FILE).read_text())["settings"]["seed"] == 9


@pytest.mark.parametrize(("first", "second"), [("lora", "full"), ("full", "lora")])
def test_overwrite_leaves_no_file_of_the_old_run(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, first: str, second: str
) -> None:
    """An adapter run overwritten by a full fine-tune (or the reverse) leaves none of its model files: the folder
    holds, and loads, exactly what the same run writes into a clean folder."""
    flags = {"lora": ["--use_lora", "true", "--lora_r", "4"], "full": []}
    out, clean = tmp_path / "out", tmp_path / "clean"
    train_tiny(tiny_model_dir, tiny_corpus, out, *flags[first])
    train_tiny(tiny_model_dir, tiny_corpus, out, *flags[second], "--overwrite_output_dir", "true")
    train_tiny(tiny_model_dir, tiny_corpus, clean, *flags[second])

    def files(folder: Path) -> set[str]:
        return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}

    assert files(out) == files(clean)
    got, expected = (SentenceEncoder.from_pretrained(str(d)).encode(SENTENCES[:4]) for d in (out, clean))
    assert torch.equal(got, expected)


def test_resuming_a_checkpoint_at_max_steps_trains_nothing(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    """A run stopped during its final save, its last checkpoint at max_steps (mid-epoch, constant learning rate):
    the re-run takes no step past max_steps and ends with the uninterrupted run's weights. Changing a setting of
    such a finished run would train nothing: refused, with the way to train further."""
    config, out = (
        _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=4, lr_scheduler_type="constant"),
        tmp_path / "out",
    )
    assert main([config]) == 0
    weights = (out / "model.safetensors").read_bytes()
    (out / RUN_FILE).write_text(json.dumps({**json.loads((out / RUN_FILE).read_text()), "completed": False}))
    (out / "model.safetensors").unlink()
    assert main([config]) == 0
    assert [entry["step"] for entry in _state(out)["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert (out / "model.safetensors").read_bytes() == weights

    capsys.readouterr()
    assert main([config, "--mix_lambda", "0.3", "--resume_changed_settings", "mix_lambda"]) == 2
    assert "would train nothing; raise max_steps too" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights
    assert json.loads((out / RUN_FILE).read_text())["settings"]["mix_lambda"] == 0.2


def test_a_finished_run_without_checkpoints_is_not_retrained_silently(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    """Extending a finished run that kept no checkpoint would train it again from step 0: refused."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=4, save_strategy="no"), tmp_path / "out"
    assert main([config]) == 0
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main([config, "--max_steps", "8", "--resume_changed_settings", "max_steps"]) == 2
    assert "kept no checkpoint to continue from" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("streaming", [False, True])
def test_a_corpus_rewritten_in_place_is_not_resumed(
    tiny_model_dir: str,
    tiny_corpus: Path,
    tmp_path: Path,
    nan_from_call,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    streaming: bool,
) -> None:
    """The run record fingerprints train_file's content, not only its path: a run stopped at step 3 does not
    resume on the file rewritten in place, unless told to (and then it does)."""
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, streaming=streaming)
    nan_from_call(3)
    assert main([config]) == 3
    monkeypatch.undo()
    tiny_corpus.write_text(tiny_corpus.read_text(encoding="utf-8").replace("guitar", "violin"), encoding="utf-8")
    capsys.readouterr()
    assert main([config]) == 2
    assert "its content has changed since; pass --resume_changed_settings train_file_content" in capsys.readouterr().err
    assert main([config, "--resume_changed_settings", "train_file_content"]) == 0
    assert _state(tmp_path / "out")["global_step"] == 6


def test_a_checkpoint_of_another_run_is_not_resumed(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """A crash between the new run identity and the removal of old checkpoints: the old ones are skipped."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus), tmp_path / "out"
    assert main([config, "--max_steps", "4"]) == 0
    identity = json.loads((out / RUN_FILE).read_text())
    (out / RUN_FILE).write_text(json.dumps({**identity, "run_id": "another", "completed": False}))
    assert main([config, "--max_steps", "4"]) == 0
    assert _state(out)["log_history"][0]["step"] == 1  # trained from the start, not from checkpoint-4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mix_lambda", "0.3"], "with mix_lambda=0.2, this run asks for mix_lambda=0.3; pass --mix_lambda 0.2 to"),
        (["--mask_duplicates", "false"], "pass --mask_duplicates true to resume as it was, or --resume_changed"),
        (["--learning_rate", "1e-4"], "learning_rate=5e-05, this run asks for learning_rate=0.0001"),
        (["--per_device_train_batch_size", "6"], "per_device_train_batch_size=4, this run asks for"),
        (["--model_name_or_path", "{other_model}"], "start a new run in a new output_dir"),
        # the flag the user changed, not the Trainer's bf16/fp16 it sets
        (["--precision", "bf16"], "precision='fp32', this run asks for precision='bf16'; pass --precision fp32 to"),
    ],
)
def test_changed_settings_are_refused_before_anything_is_written(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, nan_from_call, capsys, flags: list[str], message: str
) -> None:
    """Case 2: resuming with a different defining setting is one line naming it, and output_dir is untouched."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus), tmp_path / "out"
    nan_from_call(5)
    assert main([config]) == 3
    before = _snapshot(out)
    capsys.readouterr()
    other_model = tmp_path / "other-model"
    other_model.mkdir()
    assert main([config, *[flag.format(other_model=other_model) for flag in flags]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert _snapshot(out) == before


def test_a_precision_change_is_named_as_precision() -> None:
    """The run record keeps the Trainer's bf16/fp16 flags; a change names precision, the setting a user changes,
    and may be allowed by that name (or by bf16, its earlier name) between bf16 and fp32, never to or from fp16."""
    bf16, fp32, fp16 = ({"bf16": b, "fp16": f, "seed": 1} for b, f in ((True, False), (False, False), (False, True)))
    with pytest.raises(UsageError, match="precision='bf16', this run asks for precision='fp32'; pass --precision"):
        check_same_run(bf16, fp32, [], "the run")
    assert check_same_run(bf16, fp32, ["precision"], "the run") == ["precision"]
    assert check_same_run(bf16, fp32, ["bf16"], "the run") == ["precision"]
    with pytest.raises(UsageError, match="precision='fp16', this run asks for precision='fp32'; start a new run"):
        check_same_run(fp16, fp32, ["precision"], "the run")


def test_an_allowed_learning_rate_change_takes_effect(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """--resume_changed_settings learning_rate: the resumed steps use the new rate on the same schedule."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus, lr_scheduler_type="constant"), tmp_path / "out"
    assert main([config, "--max_steps", "2"]) == 0
    (out / RUN_FILE).write_text(json.dumps({**json.loads((out / RUN_FILE).read_text()), "completed": False}))
    # max_steps 2 -> 6 and a new rate, both allowed explicitly
    flags = ["--learning_rate", "1e-4", "--resume_changed_settings", "learning_rate", "max_steps"]
    assert main([config, *flags]) == 0
    rates = {entry["step"]: entry["learning_rate"] for entry in _state(out)["log_history"] if "loss" in entry}
    assert rates[1] == pytest.approx(5e-5) and rates[2] == pytest.approx(5e-5)
    assert all(rates[step] == pytest.approx(1e-4) for step in range(3, 7))
    assert json.loads((out / RUN_FILE).read_text())["settings"]["learning_rate"] == 1e-4


def test_a_second_run_on_the_same_output_dir_refuses(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    """Case 3: a live holder of the lock refuses a run at once; once the holder is killed (SIGKILL: no clean-up
    runs), the kernel has released its lock and the next run takes it."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=2), tmp_path / "out"
    out.mkdir()
    lock = str(out / LOCK_FILE)
    hold = f"from filelock import FileLock; held = FileLock({lock!r}); held.acquire(); print('held', flush=True)"
    hold += "; input()"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([config]) == 2
        assert "is in use by another run" in capsys.readouterr().err
        assert sorted(os.listdir(out)) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    assert main([config]) == 0
    assert _state(out)["global_step"] == 2


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_busy_output_dir_refuses_before_torch_loads(tmp_path: Path, rank: str) -> None:
    """The main process checks the lock before the seconds of imports and model loading (a fresh process, to see
    what it imported). Another rank leaves the lock to the main process, whose hold it must not take for another
    run's: alone here, it is refused only by the lock the run takes (after torch)."""
    out, config = tmp_path / "out", tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"output_dir": "${OUT}", "model_name_or_path": str(tmp_path / "model")}))
    code = "import sys; from run_mixcse import main; status = main(sys.argv[1:]); print(status, 'torch' in sys.modules)"
    environment = {**os.environ, "OUT": str(out), "RANK": rank, "MIXCSE_DATA_DIR": str(tmp_path)}
    with locked(str(out)):
        process = subprocess.run(
            [sys.executable, "-c", code, str(config), "--train_file", str(tmp_path / "corpus.txt")],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=environment,
        )
    if rank == "0":
        assert process.stdout.split() == ["2", "False"], process.stderr
        assert process.stderr.strip().splitlines() == [
            f"error: output_dir {str(out)!r} is in use by another run; wait for it to finish or choose another "
            "output_dir"
        ]
    else:
        assert process.stdout.split() == ["2", "True"], process.stderr
        assert "is in use by another run" in process.stderr.splitlines()[-1]  # by the run's own lock, after torch


def test_a_run_started_while_another_trains_refuses(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    """Case 3 with a real process: while one run trains, a second on the same output_dir refuses at once, and
    the first finishes unharmed."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=60, save_steps=20), tmp_path / "out"
    command = [sys.executable, str(Path(__file__).resolve().parents[2] / "run_mixcse.py"), config]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / LOCK_FILE).exists():
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the first run took no lock within 5 minutes"
        time.sleep(0.01)
    assert main([config]) == 2
    assert "is in use by another run" in capsys.readouterr().err
    assert first.wait(timeout=600) == 0, first.communicate()[1][-2000:]
    assert _state(out)["global_step"] == 60


def test_a_finished_run_is_not_trained_again(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys) -> None:
    """Case 4: re-running a completed command trains nothing and says so (exit 0); a run killed during its
    final save finishes without training past max_steps."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus), tmp_path / "out"
    assert main([config]) == 0
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main([config]) == 0
    assert "already complete (6 steps): nothing trained" in capsys.readouterr().out
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert (out / "model.safetensors").read_bytes() == weights

    # Killed during the final save: the last checkpoint is at max_steps, the run not marked complete.
    (out / RUN_FILE).write_text(json.dumps({**json.loads((out / RUN_FILE).read_text()), "completed": False}))
    (out / "model.safetensors").unlink()
    assert main([config]) == 0
    assert _state(out)["global_step"] == 6
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert (out / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize(("missing", "message"), [("scheduler.pt", "scheduler"), ("rng_state.pth", "RNG state")])
def test_resume_needs_all_its_state(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys, missing: str, message: str
) -> None:
    """Case 5: an explicit checkpoint without scheduler or RNG state is refused, not silently restarted."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=2), tmp_path / "out"
    assert main([config]) == 0
    (out / "checkpoint-2" / missing).unlink()
    capsys.readouterr()
    status = main(
        [config, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", str(out / "checkpoint-2")]
    )
    assert status == 2
    assert message in capsys.readouterr().err


def test_following_the_divergence_advice_recovers(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    """Case 6: a learning rate far too high diverges (exit 3); the printed advice, followed, trains to the end
    with finite losses."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus), tmp_path / "out"
    assert main([config, "--learning_rate", "1e30"]) == 3
    message = capsys.readouterr().err.strip().splitlines()[-1]
    advice = re.search(r"restart with a lower learning rate: (.*?)(?: \(|$)", message)
    assert advice, message
    assert main([config, "--learning_rate", "1e30", *shlex.split(advice.group(1))]) == 0
    losses = [entry["loss"] for entry in _state(out)["log_history"] if "loss" in entry]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))


def test_training_is_the_default(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """Case 9: a config without do_train trains (run_mixcse.py's job)."""
    config, out = _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=2), tmp_path / "out"
    assert "do_train" not in Path(config).read_text()
    assert main([config]) == 0
    assert _state(out)["global_step"] == 2


def test_every_file_follows_the_umask(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    """Case 17: weight files and the run records written atomically (mixcse_run.json, sts_results.json) get the
    mode every other file gets."""
    config = _config(tmp_path, tiny_model_dir, tiny_corpus, max_steps=2, do_eval=True, senteval_dir=str(tiny_senteval))
    out = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        assert main([config]) == 0
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert {"model.safetensors", RUN_FILE, "sts_results.json", f"checkpoint-2/{RUN_FILE}"} <= set(modes)
    assert set(modes.values()) == {0o644}, {name: oct(mode) for name, mode in modes.items() if mode != 0o644}


def test_transient_files_of_other_processes_are_no_run(tmp_path: Path) -> None:
    """Another rank's lock or write check in output_dir (torchrun) does not make it a foreign non-empty dir."""
    out = tmp_path / "out"
    (out / ".mixcse-write-check-abc123").mkdir(parents=True)
    (out / LOCK_FILE).write_text("")
    plan = plan_run(str(out), None, overwrite_output_dir=False, settings={"seed": 1})
    assert plan.resume_from is None and not plan.clear_other_runs


def test_a_triplet_run_resumes_as_if_uninterrupted(
    tiny_model_dir: str, tiny_triplets: Path, tmp_path: Path, nan_from_call, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Triplets: a run stopped at step 5 (checkpoint-4 kept) resumes to the losses and weights of a run that never
    stopped; resuming it on other columns of the same file is refused."""
    config = _config(tmp_path, tiny_model_dir, tiny_triplets, mix_lambda=0.3, mixed_hard_negative=True)
    reference, stopped = tmp_path / "reference", tmp_path / "out"
    assert main([config, "--output_dir", str(reference)]) == 0
    nan_from_call(5)
    assert main([config]) == 3
    monkeypatch.undo()
    capsys.readouterr()
    assert main([config, "--text_columns", "sent0", "sent1"]) == 2
    assert "text_columns" in capsys.readouterr().err
    calls = []
    original = MixCSELoss.loss_from_logits
    monkeypatch.setattr(
        MixCSELoss, "loss_from_logits", staticmethod(lambda logits: calls.append(1) or original(logits))
    )
    assert main([config]) == 0
    assert len(calls) == 2  # steps 5 and 6 only: resumed from checkpoint-4, not restarted
    expected = {e["step"]: e["loss"] for e in _state(reference)["log_history"] if "loss" in e}
    resumed = {e["step"]: e["loss"] for e in _state(stopped)["log_history"] if "loss" in e}
    assert resumed == pytest.approx(expected, abs=1e-6)
    reference_weights, resumed_weights = (
        load_file(reference / "model.safetensors"),
        load_file(stopped / "model.safetensors"),
    )
    assert max((reference_weights[k] - resumed_weights[k]).abs().max().item() for k in reference_weights) <= 1e-5


def test_runs_recorded_before_the_supervised_settings_resume(tiny_model_dir: str, tiny_corpus: Path) -> None:
    """A run identity written before text_columns / hard_negative_weight / mixed_hard_negative existed resumes
    with them at the values it trained with; other values are still refused."""
    from mixcse_hf.training.identity import ADDED_LATER, check_same_run

    settings = {"temp": 0.05, **ADDED_LATER}
    older = {"temp": 0.05}
    assert check_same_run(older, settings, [], "old run") == []
    with pytest.raises(UsageError, match=r"trained with hard_negative_weight=0\.0, this run asks for .*=0\.5"):
        check_same_run(older, {**settings, "hard_negative_weight": 0.5}, [], "old run")
