"""mixcse-eval (python -m mixcse_hf.cli.evaluate): the 7-task table, JSON report, modes, poolers and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mixcse_hf.cli.evaluate import main
from mixcse_hf.evaluation.sts import score_task
from mixcse_hf.evaluation.sts_data import STS_YEARS, TASKS, file_sha256, load_task
from mixcse_hf.models import encoder as encoder_module
from mixcse_hf.models.encoder import SentenceEncoder
from tests.conftest import BROKEN_MODELS, REPO_ROOT, minilm_path


def test_seven_task_report(tiny_model_dir: str, tiny_senteval: Path, tmp_path: Path, capsys) -> None:
    report_path = tmp_path / "report.json"
    args = ["--model_name_or_path", tiny_model_dir, "--senteval_dir", str(tiny_senteval), "--pooler", "avg"]
    assert main([*args, "--output_json", str(report_path)]) == 0
    table = capsys.readouterr().out
    for name in ("STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R", "Avg.", "alignment"):
        assert name in table

    report = json.loads(report_path.read_text())
    assert report["pooler"] == "avg"
    assert report["model"] == tiny_model_dir
    assert list(report["tasks"]) == list(TASKS)
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, "avg")
    for task in ("sts13", "sickr"):
        expected = score_task(encoder, task, load_task(task, "test", str(tiny_senteval)))
        assert report["tasks"][task]["all"] == pytest.approx(expected.all, abs=1e-6)
        assert report["tasks"][task]["wmean"] == pytest.approx(expected.wmean, abs=1e-6)
    assert report["tasks"]["sts13"]["pairs"] == 3 * 4
    alls = [report["tasks"][task]["all"] for task in TASKS]
    assert report["average"] == pytest.approx(sum(alls) / 7)
    sick_test = tiny_senteval / "SICK" / "SICK_test_annotated.txt"
    assert report["files"][str(sick_test)] == file_sha256(str(sick_test))
    assert len(report["files"]) == 2 * sum(len(subsets) for _, subsets in STS_YEARS.values()) + 2


def test_dev_mode_uses_dev_splits(tiny_model_dir: str, tiny_senteval: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "dev.json"
    args = ["--model_name_or_path", tiny_model_dir, "--senteval_dir", str(tiny_senteval), "--mode", "dev"]
    assert main([*args, "--output_json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert list(report["tasks"]) == ["stsb", "sickr"]
    assert set(report["files"]) == {
        str(tiny_senteval / "STS" / "STSBenchmark" / "sts-dev.csv"),
        str(tiny_senteval / "SICK" / "SICK_trial.txt"),
    }


def test_dev_mode_refuses_test_only_tasks(tiny_model_dir: str, tiny_senteval: Path, capsys) -> None:
    args = ["--model_name_or_path", tiny_model_dir, "--senteval_dir", str(tiny_senteval), "--mode", "dev"]
    assert main([*args, "--tasks", "sts12", "stsb"]) == 2
    assert "sts12: test split only" in capsys.readouterr().err


def test_sentence_transformers_directory_uses_its_pooling() -> None:
    assert SentenceEncoder.from_pretrained(minilm_path()).pooler_type == "avg"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing_dir", "task directory"),
        ("malformed", "STS.input.headlines.txt:4: malformed line"),
        ("missing_model", "cannot load model_name_or_path"),
    ],
)
def test_bad_input_is_one_line(
    setup: str, message: str, tiny_model_dir: str, tiny_senteval: Path, tmp_path: Path
) -> None:
    """As a real process: exit status 2, one stderr line naming the file (and line)."""
    model = tiny_model_dir
    if setup == "missing_dir":
        (tiny_senteval / "STS" / "STS16-en-test").rename(tmp_path / "moved")
    elif setup == "malformed":
        path = tiny_senteval / "STS" / "STS13-en-test" / "STS.input.headlines.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[3] = lines[3].replace("\t", " ")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        model = str(tmp_path / "no-such-model")
    command = [sys.executable, "-m", "mixcse_hf.cli.evaluate", "--model_name_or_path", model]
    proc = subprocess.run(
        [*command, "--senteval_dir", str(tiny_senteval)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert message in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_a_model_that_cannot_encode_is_one_line(
    case: str, broken_models: dict[str, str], tiny_senteval: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """No tokenizer files (scores from [UNK] only, with exit 0), an empty folder, an unknown model_type, corrupt
    weights: exit status 2, one line naming the folder, no report written."""
    report = tmp_path / "report.json"
    args = ["--model_name_or_path", broken_models[case], "--senteval_dir", str(tiny_senteval)]
    assert main([*args, "--output_json", str(report)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if not line.startswith(" ")] == [err.strip()], err
    assert err.startswith("error: ") and BROKEN_MODELS[case] in err and repr(broken_models[case]) in err
    assert not report.exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [("a_directory", "is a directory"), ("missing/report.json", "does not exist; create it first")],
)
def test_unwritable_output_json_fails_before_evaluating(
    target: str, message: str, tiny_model_dir: str, tiny_senteval: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """--output_json that cannot be written is one line, before any model is loaded or sentence encoded."""
    (tmp_path / "a_directory").mkdir()
    monkeypatch.setattr(SentenceEncoder, "from_pretrained", lambda *args: pytest.fail("the model was loaded"))
    args = ["--model_name_or_path", tiny_model_dir, "--senteval_dir", str(tiny_senteval)]
    assert main([*args, "--output_json", str(tmp_path / target)]) == 2
    assert message in capsys.readouterr().err


def test_one_labelled_line_per_task_and_no_bars_in_a_log(tiny_model_dir: str, tiny_senteval: Path) -> None:
    """As a real process writing to a pipe (a log): one line per task, named, and no progress-bar redraws."""
    command = [sys.executable, "-m", "mixcse_hf.cli.evaluate", "--model_name_or_path", tiny_model_dir]
    proc = subprocess.run(
        [*command, "--senteval_dir", str(tiny_senteval), "--pooler", "avg", "--batch_size", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    for name in ("STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R"):
        assert sum(f" {name}: " in line and "pairs, Spearman x100 (all)" in line for line in lines) == 1
    assert "\r" not in proc.stderr and "Encoding" not in proc.stderr
    assert "" not in [line.strip() for line in lines]


def test_padding_free_evaluation_gives_the_same_table(
    tiny_model_dir: str, tiny_senteval: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed_batches = []
    original = encoder_module.embed_packed
    monkeypatch.setattr(encoder_module, "embed_packed", lambda *args: packed_batches.append(1) or original(*args))
    reports = []
    for flags in ([], ["--padding_free", "true"]):
        path = tmp_path / f"report{len(flags)}.json"
        args = ["--model_name_or_path", tiny_model_dir, "--senteval_dir", str(tiny_senteval), "--pooler", "avg"]
        assert main([*args, "--output_json", str(path), *flags]) == 0
        reports.append(json.loads(path.read_text()))
    assert packed_batches  # the second run packed its batches
    assert reports[0]["average"] == pytest.approx(reports[1]["average"], abs=1e-4)


def test_progress_reaches_a_pipe(tiny_model_dir: str, tiny_senteval: Path) -> None:
    """With stderr a pipe (no progress bar), every task logs how far its encoding is; the interval, 30 s, is set to
    0 here so that the tiny tasks log too."""
    code = (
        "import sys; from mixcse_hf.models import encoder; encoder.PROGRESS_LOG_SECONDS = 0; "
        "from mixcse_hf.cli.evaluate import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["--model_name_or_path", tiny_model_dir, "--senteval_dir", str(tiny_senteval), "--batch_size", "4"]
    process = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO_ROOT)
    assert process.returncode == 0, process.stderr[-2000:]
    for task in ("STS12", "STS16", "STS-B", "SICK-R"):
        assert re.search(rf"INFO mixcse_hf\.models\.encoder: {task}: \d+ of \d+ sentences encoded", process.stderr)


def test_progress_lines_are_spaced_by_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    times = iter([0.0, 10.0, 31.0, 40.0, 62.0, 70.0])
    progress = encoder_module.ProgressLog("STS15", total=600, interval=30.0, clock=lambda: next(times))
    caplog.set_level("INFO", logger=encoder_module.__name__)
    for _ in range(5):
        progress.update(100)
    assert [record.getMessage() for record in caplog.records] == [
        "STS15: 200 of 600 sentences encoded (33%), 31 s",
        "STS15: 400 of 600 sentences encoded (67%), 62 s",
    ]
