"""Text files of one sentence a line, read the same way everywhere: map-style and streamed training, and the encode
command; the table formats they all read (:data:`TABLE_FORMATS`) and the header rule of CSV/TSV tables
(:func:`table_header`); the checks of an input file before it is read (:func:`check_text_file`).

A *line* ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (Python's universal newlines, as ``open()`` in text mode
reads), and at nothing else: other Unicode separators (``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``,
``\\u2028``, ``\\u2029``) stay inside the sentence. Lines are numbered from 1 by those line ends. A UTF-8 byte-order
mark at the start of the file is not text. A line is *blank* (:func:`is_blank`) when it holds only whitespace,
control characters (NUL included) or invisible format characters: training skips such lines, the encode command
refuses them.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from typing import TypeVar

from mixcse_hf.errors import UsageError

_BLANK = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]*")
"""Whitespace, control characters (NUL included) and invisible format characters: nothing to encode."""
CHECK_BLOCK_BYTES = 1 << 20
TABLE_FORMATS = {
    ".csv": ("csv", ","),
    ".tsv": ("csv", "\t"),
    ".json": ("json", None),
    ".jsonl": ("json", None),
    ".parquet": ("parquet", None),
}
"""``train_file`` suffix -> (``datasets`` builder, field separator); any other file is text, one sentence a line.
CSV fields may be quoted, TSV fields not (:func:`table_quoting`)."""
Item = TypeVar("Item")


def is_blank(text: str | None) -> bool:
    """True for ``None`` and for text made only of whitespace, control or zero-width characters."""
    return text is None or _BLANK.fullmatch(text) is not None


def not_utf8(what: str, path: str, line: int, reason: str) -> UsageError:
    """The one-line error for a file that is not UTF-8, naming the first bad line."""
    return UsageError(
        f"{what} {path!r} is not valid UTF-8 (line {line}: {reason}); re-encode it, e.g. iconv -f latin1 -t utf-8"
    )


def read_lines(path: str, what: str = "file") -> Iterator[tuple[int, str]]:
    """``(line number, text without its line end)`` for every line of the UTF-8 text file ``path``, blank lines
    included (see the module docstring for what a line is). Bytes that are not UTF-8 are a :class:`UsageError`
    naming ``what``, ``path`` and the exact line, raised when that line is reached."""
    number = 0
    with open(path, "rb") as handle:
        for raw in handle:  # split at b"\n" only; a lone b"\r" ends a line too (below)
            if number == 0 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise not_utf8(what, path, number + 1 + raw[: err.start].count(b"\r"), err.reason) from err
            # "\r\n" or "\n" ends ``raw``, or a "\r" or nothing at the end of the file; a "\r" inside ends a line
            for text_line in text.removesuffix("\n").removesuffix("\r").split("\r"):
                number += 1
                yield number, text_line


def _line_ends(block: bytes, after_cr: bool) -> int:
    """How many line ends ``block`` holds (``\\r\\n`` counts once, also when the block before ended in ``\\r``)."""
    ends = block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
    return ends - int(after_cr and block.startswith(b"\n"))


def check_utf8(path: str, what: str = "file", max_bytes: int | None = None) -> None:
    """A :class:`UsageError` naming the first line of ``path`` that is not UTF-8 (the lines of :func:`read_lines`);
    only the first ``max_bytes`` bytes when given (a character cut at that point is fine). Faster than reading the
    lines: the file is decoded in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, left, after_cr = 1, max_bytes, False
    with open(path, "rb") as handle:
        while block := handle.read(CHECK_BLOCK_BYTES if left is None else min(CHECK_BLOCK_BYTES, left)):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                # err.start counts from the bytes the decoder still held from the block before
                start = max(err.start - len(err.object) + len(block), 0)
                raise not_utf8(what, path, line + _line_ends(block[:start], after_cr), err.reason) from err
            line += _line_ends(block, after_cr)
            after_cr = block.endswith(b"\r")
            if left is not None:
                left -= len(block)
                if left == 0:
                    return
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise UsageError(f"{what} {path!r} ends in a truncated UTF-8 sequence; re-encode it") from err


def table_quoting(separator: str) -> int:
    """CSV fields may be quoted (RFC 4180); TSV fields are taken as they are, quotes included (no quoting in TSV)."""
    return csv.QUOTE_NONE if separator == "\t" else csv.QUOTE_MINIMAL


def table_header(path: str, separator: str, what: str = "train_file") -> list[str]:
    """The header row of the CSV/TSV ``path`` (``what``: how errors name it), once it names each column once and a
    row follows it (blank lines are no rows); else a one-line :class:`UsageError`."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=separator, quoting=table_quoting(separator))
            header = next(reader, [])
            has_row = next((row for row in reader if row), None) is not None
    except csv.Error:
        has_row = True  # a malformed table: the reader that reads the rows names the problem
    except UnicodeDecodeError:
        check_utf8(path, what)  # names the exact line
        raise
    if not header:
        raise UsageError(f"{what} {path!r} is empty; it needs a header row, then one row per example")
    twice = [column for index, column in enumerate(header) if column in header[:index]]
    if twice:
        raise UsageError(
            f"{what} {path!r}: the header names the column {twice[0]!r} twice (columns: {', '.join(header)}); "
            "give each column its own name"
        )
    if not has_row:
        raise UsageError(
            f"{what} {path!r} has a header ({', '.join(header)}) but no rows; add one row per example under it"
        )
    return header


def check_text_file(
    path: str, what: str = "train_file", lines: bool = True, utf8: bool = True, utf8_bytes: int | None = None
) -> None:
    """Fail with a one-line :class:`UsageError` if ``path`` is missing, empty or (``utf8``) not UTF-8, checking its
    first ``utf8_bytes`` bytes only when given (:func:`check_utf8`).
    ``lines``: the file is one sentence per line (the messages say so)."""
    expected = "a text file with one sentence per line" if lines else "a data file"
    if not os.path.exists(path):
        raise UsageError(f"{what} {path!r} does not exist; check the path (relative paths start at the cwd)")
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path!r} is not a file; pass {expected}")
    if os.path.getsize(path) == 0:
        raise UsageError(f"{what} {path!r} is empty; it needs {'one sentence per line' if lines else 'rows'}")
    if utf8:
        check_utf8(path, what, utf8_bytes)


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of ``size`` items, the last one shorter (``itertools.batched``, which needs Python 3.12)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
