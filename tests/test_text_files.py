"""One text reader for every text file of sentences: what a line is, what blank is, the exact line of bad UTF-8,
and the same rows for map-style training, streamed training and the encode command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixcse_hf import text_files
from mixcse_hf.errors import UsageError
from mixcse_hf.text_files import check_utf8, is_blank, read_lines
from mixcse_hf.training.data import load_corpus
from mixcse_hf.training.streaming import TextFileRows

MIXED = "\ufeffone\x85still one\ntwo\u2028still two\rthree\r\n\n \x00\r\nfour\x0cstill four\r\r\nlast"
"""A BOM, every line end (LF, CR, CRLF, none at the end), other Unicode separators inside lines, blank lines."""
MIXED_LINES = ["one\x85still one", "two\u2028still two", "three", "", " \x00", "four\x0cstill four", "", "last"]


def test_a_line_ends_at_lf_crlf_or_cr_only(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(MIXED.encode())
    assert list(read_lines(str(path))) == list(enumerate(MIXED_LINES, start=1))
    with open(path, encoding="utf-8-sig") as handle:  # Python's universal newlines agree
        assert [line.removesuffix("\n") for line in handle] == MIXED_LINES


def test_blank_is_whitespace_control_or_invisible() -> None:
    assert all(is_blank(text) for text in (None, "", " \t", "\x00\x07", "\u200b\ufeff", "\u2028"))
    assert not any(is_blank(text) for text in ("a", " a ", "\x00a"))


@pytest.mark.parametrize("block_bytes", [1, 2, 5, 1 << 20])
def test_bad_utf8_names_its_exact_line(tmp_path: Path, block_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines counted as read_lines counts them (a CRLF cut between two blocks of the check ends one line)."""
    monkeypatch.setattr(text_files, "CHECK_BLOCK_BYTES", block_bytes)
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"a\r\nb\rc\n\r\n" + "caf\xe9\n".encode("latin-1"))
    for check in (check_utf8, lambda *args: list(read_lines(*args))):
        with pytest.raises(UsageError, match=r"^INPUT '.*latin1.txt' is not valid UTF-8 \(line 5: invalid"):
            check(str(path), "INPUT")


def test_training_reads_the_same_rows_map_style_and_streamed(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(MIXED.encode())
    expected = [line for line in MIXED_LINES if not is_blank(line)]
    assert load_corpus(train_file=str(path))["text"] == expected
    assert [row["text"] for row in TextFileRows(str(path))()] == expected


def test_a_text_file_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    """The map-style cache follows the file: the same path, the same size, new content."""
    path = tmp_path / "corpus.txt"
    path.write_text("first a\nfirst b\n", encoding="utf-8")
    assert load_corpus(train_file=str(path))["text"] == ["first a", "first b"]
    stat = os.stat(path)
    path.write_text("other a\nother b\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert load_corpus(train_file=str(path))["text"] == ["other a", "other b"]


def _bad_byte_file(path: Path, rows_before: int) -> int:
    """``path`` (.txt, .csv, .tsv or .jsonl) with ``rows_before`` good lines (a header first for .csv/.tsv; CRLF
    line ends among them, and CR in a text file) and then a Latin-1 byte; returns the number of the bad line."""
    suffix = path.suffix
    lines = [b"text"] if suffix in (".csv", ".tsv") else []
    for index in range(rows_before):
        lines.append(b'{"text": "sentence %d ."}' % index if suffix == ".jsonl" else b"sentence %d ." % index)
    ends = [b"\n", b"\r\n", b"\r"] if suffix == ".txt" else [b"\n", b"\r\n"]
    body = b"".join(line + ends[index % len(ends)] for index, line in enumerate(lines))
    bad = '{"text": "caf\xe9 ."}' if suffix == ".jsonl" else "caf\xe9 ."
    path.write_bytes(body + bad.encode("latin-1") + b"\nlast .\n")
    return len(lines) + 1


def _first_usage_error(read) -> str:
    with pytest.raises(UsageError) as info:
        read()
    return str(info.value)


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".tsv", ".jsonl"])
@pytest.mark.parametrize("where", ["early", "past the checked start"])
def test_every_reader_names_the_exact_line_of_a_bad_byte(tmp_path: Path, suffix: str, where: str) -> None:
    """Map-style and streamed training and the encode command, on text files and tables, at the start of the file
    and past the first MiB that streaming checks up front: the same exact line, counted as read_lines counts."""
    from mixcse_hf.cli.encode import count_texts
    from mixcse_hf.training.streaming import StreamingCorpus, row_source

    path = tmp_path / f"train{suffix}"
    line = _bad_byte_file(path, 3 if where == "early" else 70_000)
    assert where == "early" or path.stat().st_size > 1 << 20
    expected = f"is not valid UTF-8 (line {line}: "

    def streamed() -> None:
        corpus = StreamingCorpus(row_source(str(path), None), 2, 0, 0)
        sum(1 for _ in corpus.epoch_rows(0))

    readers = {
        "map-style": lambda: load_corpus(train_file=str(path)),
        "streamed": streamed,
        "encode": lambda: count_texts(str(path), suffix, "text"),
    }
    messages = {name: _first_usage_error(read) for name, read in readers.items()}
    assert all(expected in message for message in messages.values()), messages
