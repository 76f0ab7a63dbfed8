"""SentEval-layout readers: STS12-16 subsets, STS-B, SICK-R, and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixcse_hf.errors import UsageError
from mixcse_hf.evaluation.sts_data import STS_YEARS, load_stsb, load_task, read_sick_file, read_stsb_file


def test_stsb_reads_fields_4_5_6_and_ignores_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "sts-dev.csv"
    path.write_text(
        "genre\tfile\tyear\t0001\t2.5\tfirst one .\tsecond one .\n"
        'genre\tfile\tyear\t0002\t4.0\ta "quoted" one\tother\textra\tfields\n',
        encoding="utf-8",
    )
    pairs = read_stsb_file(str(path))
    assert pairs.scores == [2.5, 4.0]
    assert pairs.sentences1 == ["first one .", 'a "quoted" one']
    assert pairs.sentences2 == ["second one .", "other"]
    assert pairs.files == (str(path),)


@pytest.mark.parametrize("bad_line", ["genre\tfile\tyear\t0002\tnot-a-number\ta\tb", "too\tfew\tfields"])
def test_stsb_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "sts-test.csv"
    path.write_text(f"g\tf\ty\t1\t3.0\ta\tb\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(UsageError, match=f"{path}:2: malformed line"):
        read_stsb_file(str(path))


def test_sts_year_drops_empty_gold_lines(tiny_senteval: Path) -> None:
    subsets = load_task("sts12", "test", str(tiny_senteval))
    assert list(subsets) == list(STS_YEARS["sts12"][1])
    directory = tiny_senteval / "STS" / "STS12-en-test"
    inputs = (directory / "STS.input.MSRpar.txt").read_text(encoding="utf-8").splitlines()
    golds = (directory / "STS.gs.MSRpar.txt").read_text(encoding="utf-8").splitlines()
    kept = [(line.split("\t"), float(gold)) for line, gold in zip(inputs, golds, strict=True) if gold]
    msrpar = subsets["MSRpar"]
    assert len(msrpar) == 4 == len(kept)
    assert msrpar.sentences1 == [fields[0] for fields, _ in kept]
    assert msrpar.sentences2 == [fields[1] for fields, _ in kept]
    assert msrpar.scores == [score for _, score in kept]


def test_sts_year_errors_name_file_and_line(tiny_senteval: Path) -> None:
    directory = tiny_senteval / "STS" / "STS14-en-test"
    (directory / "STS.gs.images.txt").write_text("1.0\n2.0\nabc\n3.0\n4.0\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"STS\.gs\.images\.txt:3: malformed line"):
        load_task("sts14", "test", str(tiny_senteval))
    (directory / "STS.gs.images.txt").write_text("1\n2\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"has 5 lines but .* has 2"):
        load_task("sts14", "test", str(tiny_senteval))


def test_sts_year_malformed_input_line(tiny_senteval: Path) -> None:
    path = tiny_senteval / "STS" / "STS15-en-test" / "STS.input.belief.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = "no tab on this line"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=rf"{path}:2: malformed line"):
        load_task("sts15", "test", str(tiny_senteval))


def test_missing_task_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"task directory .*STS16-en-test.* does not exist"):
        load_task("sts16", "test", str(tmp_path))


def test_sick_uses_header_columns(tmp_path: Path) -> None:
    path = tmp_path / "SICK_test_annotated.txt"
    path.write_text(
        "pair_ID\tentailment_judgment\tsentence_B\tsentence_A\trelatedness_score\n"
        "1\tNEUTRAL\tsecond\tfirst\t3.6\n"
        "2\tENTAILMENT\tb\ta\t4.5\n",
        encoding="utf-8",
    )
    pairs = read_sick_file(str(path))
    assert pairs.sentences1 == ["first", "a"]
    assert pairs.sentences2 == ["second", "b"]
    assert pairs.scores == [3.6, 4.5]


def test_sick_bad_header_and_line(tmp_path: Path) -> None:
    path = tmp_path / "SICK_trial.txt"
    path.write_text("id\ta\tb\n", encoding="utf-8")
    with pytest.raises(UsageError, match=":1: malformed line"):
        read_sick_file(str(path))
    path.write_text("pair_ID\tsentence_A\tsentence_B\trelatedness_score\n1\ta\tb\tx\n", encoding="utf-8")
    with pytest.raises(UsageError, match=":2: malformed line"):
        read_sick_file(str(path))


def test_splits_and_tasks_are_checked(tiny_senteval: Path) -> None:
    with pytest.raises(UsageError, match="only a test split"):
        load_task("sts13", "dev", str(tiny_senteval))
    with pytest.raises(UsageError, match="unknown STS task"):
        load_task("sts17", "test", str(tiny_senteval))
    assert len(load_task("sickr", "dev", str(tiny_senteval))["sickr"]) == 6


def test_shared_data_sizes(data_dir: Path) -> None:
    """Pair counts of the shared SentEval copy after dropping empty gold lines (its README's table)."""
    senteval = str(data_dir / "senteval")
    sizes = {task: sum(len(p) for p in load_task(task, "test", senteval).values()) for task in STS_YEARS}
    assert sizes == {"sts12": 3108, "sts13": 1500, "sts14": 3750, "sts15": 3000, "sts16": 1186}
    assert {split: len(load_stsb(split, senteval)) for split in ("train", "dev", "test")} == {
        "train": 5749,
        "dev": 1500,
        "test": 1379,
    }
    assert {split: len(load_task("sickr", split, senteval)["sickr"]) for split in ("train", "dev", "test")} == {
        "train": 4500,
        "dev": 500,
        "test": 4927,
    }
