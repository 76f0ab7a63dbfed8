"""Corpus loading: blank lines, bad files, datasets input, tokenisation."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mixcse_hf.errors import UsageError
from mixcse_hf.training.data import load_corpus, tokenize_corpus
from tests.conftest import SENTENCES


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
    with pytest.raises(UsageError, match="no column 'text'"):
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
