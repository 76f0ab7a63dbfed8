"""Training data loading: blank lines, bad files, datasets input, table formats and column detection, tokenisation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

from mixcse_hf.errors import UsageError
from mixcse_hf.training.data import (
    SUPERVISED_COLUMNS,
    load_corpus,
    tokenize_corpus,
    tokenize_training_data,
    training_collator,
)
from mixcse_hf.training.streaming import StreamingCorpus, row_source
from tests.conftest import SENTENCES, triplet_rows


def test_text_file_skips_blank_lines(tiny_corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mixcse_hf.training.data")
    corpus = load_corpus(train_file=str(tiny_corpus))
    assert corpus.column_names == ["text"]
    assert corpus["text"] == SENTENCES + SENTENCES[::-1]
    assert "2 blank lines skipped" in caplog.text


def test_control_character_lines_count_as_blank(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Lines of NUL bytes, other control characters or zero-width spaces hold no sentence."""
    caplog.set_level("INFO", logger="mixcse_hf.training.data")
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join([SENTENCES[0], "\x00\x00\x00", "\x07\x1b", "\u200b\ufeff", SENTENCES[1]]) + "\n")
    assert load_corpus(train_file=str(path))["text"] == SENTENCES[:2]
    assert "3 blank lines skipped" in caplog.text


def test_max_train_samples_keeps_the_head(tiny_corpus: Path) -> None:
    assert load_corpus(train_file=str(tiny_corpus), max_train_samples=3)["text"] == SENTENCES[:3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"\n  \n\t\n", "only blank lines"),
        (b"fine line\nbad \xff byte\n", "not valid UTF-8 \\(line 2"),
    ],
)
def test_bad_text_files_name_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "train.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message) as info:
        load_corpus(train_file=str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_directory_as_train_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a file"):
        load_corpus(train_file=str(tmp_path))


def test_datasets_directory_with_text_column(tmp_path: Path) -> None:
    """Any datasets-loadable source works; its text column is renamed and blanks dropped."""
    data = tmp_path / "csv_corpus"
    data.mkdir()
    rows = ["id,sentence"] + [f"{i},{s}" for i, s in enumerate(SENTENCES[:4])] + ["4,"]
    (data / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    corpus = load_corpus(dataset_name=str(data), text_column="sentence")
    assert corpus["text"] == SENTENCES[:4]
    with pytest.raises(UsageError, match=r"cannot tell the training columns from \['id', 'sentence'\]"):
        load_corpus(dataset_name=str(data))


def test_exactly_one_source_required(tiny_corpus: Path) -> None:
    with pytest.raises(UsageError, match="exactly one"):
        load_corpus()
    with pytest.raises(UsageError, match="exactly one"):
        load_corpus(train_file=str(tiny_corpus), dataset_name="x")


def test_tokenize_truncates_without_padding(tiny_corpus: Path, tiny_model_dir: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenized = tokenize_corpus(load_corpus(train_file=str(tiny_corpus)), tokenizer, max_seq_length=6)
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert set(tokenized.column_names) >= {"input_ids", "attention_mask"}
    assert max(lengths) == 6
    assert len(tokenized) == 2 * len(SENTENCES)
    assert tokenized[0]["input_ids"][0] == tokenizer.cls_token_id
    assert tokenized[0]["input_ids"][-1] == tokenizer.sep_token_id


# --------------------------------------------------------------------------- #
# Supervised data: formats and column detection
# --------------------------------------------------------------------------- #


def _write_table(path: Path, rows: list[dict[str, object]]) -> Path:
    frame = pd.DataFrame(rows)
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
@pytest.mark.parametrize(
    "names", [("sent0", "sent1", "hard_neg"), ("anchor", "positive", "negative"), ("sent0", "sent1")]
)
def test_tables_are_detected_from_their_columns(
    tmp_path: Path, suffix: str, names: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """Every table format, SimCSE's and sentence-transformers' names, triplets and pairs: the same canonical
    columns; a row with an empty field is dropped and counted; sentences that look like numbers or NA stay text."""
    caplog.set_level("INFO", logger="mixcse_hf.training.data")
    rows = [dict(zip(names, row, strict=False)) for row in triplet_rows()[:4]]
    rows.append(dict(zip(names, ["2006", "NA", "None"], strict=False)))
    rows.append(dict(zip(names, [SENTENCES[0], "", SENTENCES[1]], strict=False)))
    corpus = load_corpus(train_file=str(_write_table(tmp_path / f"train{suffix}", rows)))
    expected = list(SUPERVISED_COLUMNS[: len(names)])
    assert corpus.column_names == expected
    assert [list(row.values()) for row in corpus] == [[row[name] for name in names] for row in rows[:5]]
    assert "1 rows with a blank field dropped" in caplog.text


def test_text_columns_override_detection(tmp_path: Path) -> None:
    rows = [{"q": a, "d": b, "neg": c, "sent0": "x", "sent1": "y"} for a, b, c in [SENTENCES[:3], SENTENCES[3:6]]]
    path = _write_table(tmp_path / "train.jsonl", rows)
    corpus = load_corpus(train_file=str(path), text_columns=["q", "d", "neg"])
    assert corpus["anchor"] == [SENTENCES[0], SENTENCES[3]] and corpus["negative"] == [SENTENCES[2], SENTENCES[5]]
    assert load_corpus(train_file=str(path), text_columns=["d"])["text"] == [SENTENCES[1], SENTENCES[4]]
    assert load_corpus(train_file=str(path)).column_names == ["anchor", "positive"]  # sent0/sent1 detected


@pytest.mark.parametrize(
    ("text_columns", "message"),
    [
        (None, r"cannot tell the training columns from \['question', 'answer', 'topic', 'source'\]: expected sent0"),
        (["question", "missing"], "the data has no column 'missing'"),
        (["question", "question"], "names a column twice"),
        (["question", "answer", "topic", "source"], "name 1 .* 2 .* or 3"),
    ],
)
def test_unknown_columns_are_one_line_errors(tmp_path: Path, text_columns: list[str] | None, message: str) -> None:
    path = _write_table(tmp_path / "train.csv", [{"question": "a", "answer": "b", "topic": "c", "source": "d"}])
    with pytest.raises(UsageError, match=message) as info:
        load_corpus(train_file=str(path), text_columns=text_columns)
    assert "\n" not in str(info.value)


def test_an_explicit_text_column_means_unsupervised(tmp_path: Path) -> None:
    """--text_column names the one column to train on, even where SimCSE's pair columns would be detected."""
    rows = [{"sent0": a, "sent1": b, "sentence": c} for a, b, c in [SENTENCES[:3], SENTENCES[3:6]]]
    path = _write_table(tmp_path / "train.csv", rows)
    assert load_corpus(train_file=str(path), text_column="sentence")["text"] == [SENTENCES[2], SENTENCES[5]]
    with pytest.raises(UsageError, match="text_column \\['nope'\\]: the data has no column 'nope'"):
        load_corpus(train_file=str(path), text_column="nope")


def test_tsv_fields_are_taken_as_they_are(tmp_path: Path) -> None:
    """TSV has no quoting: a field that starts with a quote stays one field, quotes included (a CSV reader would
    swallow the following rows into it)."""
    path = tmp_path / "train.tsv"
    lines = ["anchor\tpositive", '"Quoted start\tb1', 'row2 "a\tb2', 'c3\t"d3"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(train_file=str(path))
    assert corpus["anchor"] == ['"Quoted start', 'row2 "a', "c3"]
    assert corpus["positive"] == ["b1", "b2", '"d3"']


def test_non_text_columns_are_refused(tmp_path: Path) -> None:
    path = _write_table(tmp_path / "train.jsonl", [{"anchor": "a", "positive": ["b", "c"]}])
    with pytest.raises(UsageError, match=r"column 'positive' .* not text"):
        load_corpus(train_file=str(path))


def test_malformed_table_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{not json\n', encoding="utf-8")
    with pytest.raises(UsageError, match="is not a readable jsonl file") as info:
        load_corpus(train_file=str(path))
    assert str(path) in str(info.value)


TABLES_WITHOUT_TRAINING_ROWS = {
    "duplicate column": ("train.csv", "sent0,sent1,sent1\na,b,c\nd,e,f\n", "names the column 'sent1' twice"),
    "duplicate tsv column": ("train.tsv", "anchor\tanchor\na\tb\n", "names the column 'anchor' twice"),
    "header only": ("train.csv", "sent0,sent1\n", "has a header (sent0, sent1) but no rows"),
    "header and blank lines": ("train.tsv", "anchor\tpositive\n\n\n", "has a header (anchor, positive) but no rows"),
    "json without rows": ("train.json", "[]\n", "has no rows"),
}
"""A table file -> its content and the one-line error it gets, in map-style and streamed training alike."""


@pytest.mark.parametrize("case", list(TABLES_WITHOUT_TRAINING_ROWS))
def test_duplicate_columns_and_tables_without_rows_are_one_line_errors(tmp_path: Path, case: str) -> None:
    """``sent0,sent1,sent1`` trained as pairs, reading one of the two columns; a header-only table said
    'Instruction "train" corresponds to no data!'."""
    name, content, message = TABLES_WITHOUT_TRAINING_ROWS[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    for load in (
        lambda: load_corpus(train_file=str(path)),
        lambda: StreamingCorpus(row_source(str(path), None), 4, 0, 0),
    ):
        with pytest.raises(UsageError, match=re.escape(message)) as info:
            load()
        assert "\n" not in str(info.value) and repr(str(path)) in str(info.value)


def test_supervised_rows_tokenise_into_columns(tiny_triplets: Path, tiny_model_dir: str) -> None:
    """Tokenised per column and collated into one padded length across columns (one forward pass)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenized = tokenize_training_data(load_corpus(train_file=str(tiny_triplets)), tokenizer, max_seq_length=8)
    assert tokenized.column_names == list(SUPERVISED_COLUMNS) and len(tokenized) == len(SENTENCES)
    batch = training_collator(tokenized, tokenizer)([tokenized[i] for i in range(3)])
    assert list(batch) == list(SUPERVISED_COLUMNS)
    assert len({features["input_ids"].shape for features in batch.values()}) == 1
    flat = tokenize_training_data(load_corpus(train_file=str(tiny_triplets), text_columns=["sent0"]), tokenizer, 8)
    assert "input_ids" in training_collator(flat, tokenizer)([flat[0], flat[1]])
