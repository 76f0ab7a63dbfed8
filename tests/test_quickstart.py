"""The quick start as a newcomer runs it (configs/quickstart.yaml on the tiny model, corpus and STS files): re-running
it trains nothing, --do_eval false turns every evaluation off, and short runs either work as the README's recipe
says or stop at once, before torch loads, naming the flags that fix them."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from run_mixcse import main
from tests.conftest import REPO_ROOT, SENTENCES

QUICKSTART = str(REPO_ROOT / "configs" / "quickstart.yaml")


@pytest.fixture
def tiny_quickstart(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """configs/quickstart.yaml with the tiny stand-ins: the flags that follow the config on the command line."""
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(tmp_path))
    return [
        *("--model_name_or_path", tiny_model_dir, "--train_file", str(tiny_corpus)),
        *("--senteval_dir", str(tiny_senteval), "--output_dir", str(tmp_path / "out")),
        *("--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", "--max_seq_length", "16"),
    ]


def _state(out: Path) -> dict:
    return json.loads((out / "trainer_state.json").read_text())


def _files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("config", ["quickstart.yaml", "quickstart_supervised.yaml", "quickstart_lora.yaml"])
def test_quick_starts_never_overwrite(config: str) -> None:
    """As the README promises: a non-empty output_dir is resumed or left alone, never replaced."""
    assert "overwrite_output_dir" not in yaml.safe_load((REPO_ROOT / "configs" / config).read_text())


def test_rerunning_the_quick_start_trains_nothing(
    tiny_quickstart: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    flags = [*tiny_quickstart, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2"]
    assert main([QUICKSTART, *flags]) == 0
    before = _files(out)
    capsys.readouterr()
    assert main([QUICKSTART, *flags]) == 0
    assert "run already complete (4 steps): nothing trained" in capsys.readouterr().out
    assert _files(out) == before


def test_do_eval_false_turns_every_evaluation_off(
    tiny_quickstart: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The quick start sets eval_strategy steps and load_best_model_at_end; --do_eval false still means none: no start
    scoring, no evaluation during training, no final scoring (the STS files are not even read)."""
    out = tmp_path / "out"
    flags = [*tiny_quickstart, "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2"]
    assert main([QUICKSTART, *flags, "--senteval_dir", str(tmp_path / "no-senteval"), "--do_eval", "false"]) == 0
    assert not [entry for entry in _state(out)["log_history"] if any(key.startswith("eval_") for key in entry)]
    assert json.loads((out / "sts_results.json").read_text())["stsb_spearman"] == {}
    assert json.loads((out / "mixcse_run.json").read_text())["start_scores"] == {}
    assert "STS-B" not in capsys.readouterr().out


def test_help_names_the_evaluation_switch(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "do_eval false turns all of it off" in text
    assert "whatever eval_strategy says" in text


def test_misaligned_short_run_stops_before_torch_loads() -> None:
    """The issue's short run: a save every 10 steps cannot keep the best of evaluations every 50. It stops with the
    flags that fix it, before torch or transformers is imported (a fresh process, to see what it imported)."""
    code = (
        "import sys; from run_mixcse import main; status = main(sys.argv[1:]); "
        "print(status, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    command = [sys.executable, "-c", code, QUICKSTART, "--max_steps", "10", "--save_steps", "10"]
    process = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env={"MIXCSE_DATA_DIR": "/d"})
    assert process.stdout.split() == ["2", "False", "False"], process.stderr
    assert process.stderr.strip().splitlines() == [
        "error: load_best_model_at_end keeps the best evaluated checkpoint, so save_steps 10 must be a multiple of "
        "eval_steps 50: pass --eval_steps 10 (or --save_steps 50), or --load_best_model_at_end false"
    ]


def _readme_commands(pattern: str) -> list[list[str]]:
    """The README command matching ``pattern`` (up to its comment), split at ``&&`` into words."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    words = shlex.split(re.search(pattern, readme, re.M | re.S).group(1).replace("\\\n", " "))
    commands = [[]]
    for word in words:
        commands.append([]) if word == "&&" else commands[-1].append(word)
    return commands


def test_the_readme_try_it_recipe_runs(tiny_quickstart: list[str], tmp_path: Path) -> None:
    """The README's short run of the quick start: it evaluates, saves and keeps the best model within its steps."""
    (words,) = _readme_commands(r"^(python run_mixcse\.py configs/quickstart\.yaml --max_steps .*?) +# try it")
    assert words[:3] == ["python", "run_mixcse.py", "configs/quickstart.yaml"]
    assert main([QUICKSTART, *words[3:], *tiny_quickstart]) == 0
    state = _state(tmp_path / "out")
    max_steps = int(words[words.index("--max_steps") + 1])
    assert state["global_step"] == max_steps
    evaluated = [entry["step"] for entry in state["log_history"] if "eval_stsb_spearman" in entry]
    assert len(evaluated) >= 2 and evaluated[-1] == max_steps
    assert state["best_model_checkpoint"]


def test_the_readme_pair_commands_train_on_your_pairs(
    tiny_quickstart: list[str], tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's two commands for your own pairs, as written in a folder holding pairs.csv (tiny stand-ins for
    the model and the STS data, and a short run): a CSV of pairs trains as pairs, mined negatives as triplets,
    each with the supervised quick start's evaluation and best-model keeping."""
    from mixcse_hf.cli.mine import main as mine

    monkeypatch.chdir(tmp_path)
    rows = [{"anchor": s, "positive": f"{s.removesuffix(' .')} today ."} for s in SENTENCES]
    with open("pairs.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["anchor", "positive"])
        writer.writeheader()
        writer.writerows(rows)
    short = ["--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--max_seq_length", "16"]
    (pairs,) = _readme_commands(r"^(python run_mixcse\.py \S+ --train_file pairs\.csv .*?) +# your CSV")
    mining, triplets = _readme_commands(r"^(mixcse-mine .*?) +# the same, with mined")
    assert pairs[:2] == triplets[:2] == ["python", "run_mixcse.py"] and mining[0] == "mixcse-mine"
    for command, columns in ((pairs, 2), (triplets, 3)):
        if columns == 3:
            assert mine([tiny_model_dir, *mining[2:], "--pooler", "avg"]) == 0
        assert main([str(REPO_ROOT / command[2]), *tiny_quickstart, *command[3:], *short]) == 0
        out = tmp_path / command[command.index("--output_dir") + 1]
        resolved = yaml.safe_load((out / "run_config.yaml").read_text())
        assert resolved["train_file"] == command[command.index("--train_file") + 1]
        state = _state(out)
        assert [entry["step"] for entry in state["log_history"] if "eval_stsb_spearman" in entry] == [2, 4]
        assert state["best_model_checkpoint"]
        assert json.loads((out / "sts_results.json").read_text())["sentences_per_row"] == columns
