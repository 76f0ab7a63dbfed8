"""Training data: one sentence per row (unsupervised) or (anchor, positive[, hard negative]) rows (supervised),
from a file or any ``datasets`` source; rows with a blank field dropped; tokenised once.

The layout is detected from the column names (:func:`detect_columns`): SimCSE's ``sent0, sent1[, hard_neg]``,
sentence-transformers' ``anchor, positive[, negative]``, a single ``text`` column, or the columns named
explicitly. Supervised data comes out with the columns :data:`SUPERVISED_COLUMNS` (as many as it has).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError, first_line
from mixcse_hf.models.batch import TEXT_HASH, text_hash
from mixcse_hf.models.prompts import with_prompt
from mixcse_hf.text_files import (
    TABLE_FORMATS,
    check_text_file,
    check_utf8,
    is_blank,
    read_lines,
    table_header,
    table_quoting,
)

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
SUPERVISED_COLUMNS = ("anchor", "positive", "negative")
"""The columns of supervised data once loaded: pairs have the first two, triplets all three."""
KNOWN_LAYOUTS = (("sent0", "sent1", "hard_neg"), SUPERVISED_COLUMNS)
"""Column names detected as supervised data: SimCSE's ``nli_for_simcse.csv`` and sentence-transformers'."""
FILE_BUILDERS = ("text", "csv", "json", "parquet", "arrow", "pandas")
"""``datasets`` builders of file formats: as ``dataset_name`` without data files they read the working directory."""
TEXT_FILE_FORMAT = "mixcse_hf.text_files.read_lines/1"
"""Part of the cache fingerprint of a text file read by :func:`load_text_file`: changes when the reading does."""


def detect_columns(
    column_names: Sequence[str], text_columns: Sequence[str] | None = None, text_column: str = TEXT_COLUMN
) -> list[str]:
    """The columns to train on, in order: one (unsupervised: each sentence encoded twice) or anchor, positive
    and optionally hard negative. ``text_columns`` names them explicitly; a ``text_column`` other than ``"text"``
    names the one column of unsupervised data; otherwise the first match of ``sent0, sent1[, hard_neg]``,
    ``anchor, positive[, negative]`` and ``text``."""
    if text_columns:
        _check_named_columns(list(text_columns), column_names, "text_columns")
        if not 1 <= len(text_columns) <= 3:
            raise UsageError(
                f"text_columns {list(text_columns)}: name 1 (one sentence per row), 2 (anchor positive) or 3 "
                "(anchor positive hard_negative) columns"
            )
        return list(text_columns)
    if text_column != TEXT_COLUMN:
        _check_named_columns([text_column], column_names, "text_column")
        return [text_column]
    for layout in KNOWN_LAYOUTS:
        if all(column in column_names for column in layout[:2]):
            return list(layout if layout[2] in column_names else layout[:2])
    if TEXT_COLUMN in column_names:
        return [TEXT_COLUMN]
    raise UsageError(
        f"cannot tell the training columns from {list(column_names)}: expected sent0, sent1[, hard_neg] (SimCSE), "
        "anchor, positive[, negative] (sentence-transformers) or text (one sentence per row); name yours with "
        "--text_columns ANCHOR POSITIVE [NEGATIVE] (or --text_column COLUMN for unsupervised)"
    )


def _check_named_columns(named: list[str], column_names: Sequence[str], option: str) -> None:
    missing = [column for column in named if column not in column_names]
    if missing:
        raise UsageError(
            f"{option} {named}: the data has no column {missing[0]!r} (columns: {list(column_names)}); name its columns"
        )
    if len(set(named)) != len(named):
        raise UsageError(f"{option} {named} names a column twice; name each column once")


def text_column_count(tokenized: datasets.Dataset | None) -> int:
    """How many text columns :func:`tokenize_training_data`'s output (or a streamed corpus) holds: 1 for flat
    features (unsupervised, also with no data), else one per named column."""
    if tokenized is None or "input_ids" in tokenized.column_names:
        return 1
    return len(tokenized.column_names)


def is_supervised(corpus: datasets.Dataset) -> bool:
    return corpus.column_names != [TEXT_COLUMN]


def check_dataset_name(dataset_name: str) -> None:
    """Refuse a ``datasets`` file-format builder as ``dataset_name``: without data files it would read every file
    with "train" in its name under the working directory."""
    if dataset_name in FILE_BUILDERS and not os.path.isdir(dataset_name):
        raise UsageError(
            f"dataset_name {dataset_name!r} is a file format, not a dataset: pass the file as --train_file "
            f"(.txt, {', '.join(TABLE_FORMATS)})"
        )


def table_options(path: str, separator: str, what: str = "train_file") -> dict[str, Any]:
    """``datasets`` csv-builder options for a CSV/TSV ``path`` (its header checked by :func:`table_header`): every
    field text (no numeric inference), empty fields "" (dropped as blank) rather than NaN, quotes as
    :data:`TABLE_FORMATS` says."""
    header = table_header(path, separator, what)
    return {
        "sep": separator,
        "quoting": table_quoting(separator),
        "keep_default_na": False,
        "features": datasets.Features({column: datasets.Value("string") for column in header}),
    }


def read_table_rows(rows: Iterator[dict[str, Any]], path: str) -> Iterator[dict[str, Any]]:
    """``rows``, as ``datasets`` reads them from the table file ``path``; a read error is a one-line
    :class:`UsageError` naming ``path``: the exact line of a byte that is not UTF-8
    (:func:`mixcse_hf.text_files.check_utf8`), else the reader's own first line."""
    try:
        yield from rows
    except ValueError as err:  # UnicodeDecodeError (csv), pyarrow's ArrowInvalid (json)…
        check_utf8(path, "train_file")
        suffix = os.path.splitext(path)[1].lower()
        raise UsageError(f"train_file {path!r} is not a readable {suffix[1:]} file: {first_line(err)}") from err


@dataclass(frozen=True)
class TableFileRows:
    """A picklable row source (streamed training) over the table file ``path``: ``open_rows()`` read through
    :func:`read_table_rows`."""

    open_rows: Callable[[], Iterator[dict[str, Any]]]
    path: str

    def __call__(self) -> Iterator[dict[str, Any]]:
        return read_table_rows(self.open_rows(), self.path)


def _text_file_rows(path: str) -> Iterator[dict[str, str]]:
    for _, text in read_lines(path, "train_file"):
        yield {TEXT_COLUMN: text}


def load_text_file(path: str) -> datasets.Dataset:
    """A text file as a ``Dataset`` with one ``text`` row per line (:func:`mixcse_hf.text_files.read_lines`: the lines
    that streaming and the encode command read), blank lines included. Cached by ``datasets`` under a fingerprint
    of the file's path, size and modification time: a file rewritten in place is read again."""
    stat = os.stat(path)
    identity = (TEXT_FILE_FORMAT, os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    fingerprint = hashlib.sha256(repr(identity).encode()).hexdigest()[:16]
    return datasets.Dataset.from_generator(
        _text_file_rows,
        features=datasets.Features({TEXT_COLUMN: datasets.Value("string")}),
        gen_kwargs={"path": path},
        fingerprint=fingerprint,
    )


def load_table(path: str, what: str = "train_file") -> datasets.Dataset:
    """A table file (a suffix of :data:`TABLE_FORMATS`) as a ``Dataset``, read as training reads it; a missing, empty
    or unreadable file (or, but for parquet, one that is not UTF-8) is a one-line :class:`UsageError` naming
    ``what``."""
    suffix = os.path.splitext(path)[1].lower()
    builder, separator = TABLE_FORMATS[suffix]
    check_text_file(path, what, lines=False, utf8=builder != "parquet")
    options = table_options(path, separator, what) if builder == "csv" else {}
    try:
        return datasets.load_dataset(builder, data_files={"train": path}, split="train", **options)
    except (datasets.exceptions.DatasetGenerationError, ValueError) as err:
        if "corresponds to no data" in str(err):  # datasets' words for a split without rows
            raise UsageError(f"{what} {path!r} has no rows; it needs one row per example") from err
        cause = err.__cause__ or err
        raise UsageError(f"{what} {path!r} is not a readable {suffix[1:]} file: {str(cause).splitlines()[0]}") from err


def _load_train_file(path: str) -> datasets.Dataset:
    if os.path.splitext(path)[1].lower() not in TABLE_FORMATS:
        check_text_file(path)
        return load_text_file(path)
    return load_table(path)


def _as_text(corpus: datasets.Dataset, column: str, source: str) -> datasets.Dataset:
    """``column`` as strings: numbers and booleans are cast, anything else (lists, structs) refused."""
    feature = corpus.features[column]
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return corpus
    if isinstance(feature, datasets.Value):
        return corpus.cast_column(column, datasets.Value("string"))
    raise UsageError(f"column {column!r} of {source!r} holds {feature}, not text; pick text columns")


def load_corpus(
    train_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_split: str = "train",
    text_column: str = TEXT_COLUMN,
    max_train_samples: int | None = None,
    text_columns: Sequence[str] | None = None,
) -> datasets.Dataset:
    """The training data as a ``Dataset``: one column ``text`` (unsupervised) or the columns
    :data:`SUPERVISED_COLUMNS` (two for pairs, three for triplets), rows with a blank field removed.

    Either ``train_file`` (a text file, one sentence per line, as SimCSE's ``wiki1m_for_simcse.txt``, or a table:
    :data:`TABLE_FORMATS`, e.g. SimCSE's ``nli_for_simcse.csv``) or ``dataset_name`` (anything
    ``datasets.load_dataset`` takes: a Hub id or a local data directory). Columns: :func:`detect_columns`.
    ``max_train_samples`` keeps the first rows only (after blank removal).
    """
    if (train_file is None) == (dataset_name is None):
        raise UsageError("set exactly one of train_file (a text file) or dataset_name (a datasets dataset)")
    if train_file is not None:
        corpus, source = _load_train_file(train_file), train_file
    else:
        check_dataset_name(dataset_name)
        try:
            corpus = datasets.load_dataset(dataset_name, dataset_config_name, split=dataset_split)
        except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
            raise UsageError(f"cannot load dataset_name {dataset_name!r}: {str(err).splitlines()[0]}") from err
        source = dataset_name
    columns = detect_columns(corpus.column_names, text_columns, text_column)
    corpus = corpus.select_columns(columns)
    for column in columns:
        corpus = _as_text(corpus, column, source)
    names = [TEXT_COLUMN] if len(columns) == 1 else list(SUPERVISED_COLUMNS[: len(columns)])
    corpus = corpus.rename_columns({old: new for old, new in zip(columns, names, strict=True) if old != new})
    total = len(corpus)
    corpus = corpus.filter(
        lambda batch: [not any(is_blank(text) for text in row) for row in zip(*batch.values(), strict=True)],
        batched=True,
        desc="Dropping rows with a blank field",
    )
    if len(corpus) == 0:
        if len(columns) == 1:
            raise UsageError(
                f"{source!r} contains only blank lines (whitespace or control characters); it needs one sentence "
                "per line"
            )
        raise UsageError(f"every row of {source!r} has a blank field in the columns {columns}: nothing to train on")
    skipped = total - len(corpus)
    if len(columns) == 1:
        logger.info("Corpus %s: %d sentences, %d blank lines skipped", source, len(corpus), skipped)
    else:
        layout = f"({', '.join(names)}) rows from columns {', '.join(columns)}"
        logger.info("Corpus %s: %d %s, %d rows with a blank field dropped", source, len(corpus), layout, skipped)
    if max_train_samples is not None:
        corpus = corpus.select(range(min(max_train_samples, len(corpus))))
    return corpus


def tokenize_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_seq_length: int,
    text_hashes: bool = False,
    prompt: str = "",
) -> dict[str, list]:
    """``texts`` tokenised after ``prompt`` (:func:`~mixcse_hf.models.prompts.with_prompt`), truncated to
    ``max_seq_length``; with ``text_hashes``, also each text's :func:`~mixcse_hf.models.batch.text_hash` (without
    the prompt) under :data:`~mixcse_hf.models.batch.TEXT_HASH` (duplicate masking)."""
    encoded = dict(tokenizer(with_prompt(prompt, texts), truncation=True, max_length=max_seq_length))
    if text_hashes:
        encoded[TEXT_HASH] = [text_hash(text) for text in texts]
    return encoded


def tokenize_corpus(
    corpus: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    num_proc: int | None = None,
    text_hashes: bool = False,
    prompt: str = "",
) -> datasets.Dataset:
    """Tokenise once (cached by ``datasets``), truncating to ``max_seq_length``; padding happens per batch.
    ``text_hashes``, ``prompt``: see :func:`tokenize_texts`."""
    return corpus.map(
        lambda batch: tokenize_texts(tokenizer, batch[TEXT_COLUMN], max_seq_length, text_hashes, prompt),
        batched=True,
        remove_columns=corpus.column_names,
        num_proc=num_proc,
        desc="Tokenizing",
    )


def tokenize_columns(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    columns: Sequence[str],
    max_seq_length: int,
    num_proc: int | None = None,
    text_hashes: bool = False,
    prompts: Mapping[str, str] | None = None,
) -> datasets.Dataset:
    """Rows of named text columns (e.g. ``anchor``, ``positive``, ``negative``) -> one tokenised mapping per
    column, in ``columns`` order, for :class:`TextColumnsCollator`. ``text_hashes``: each mapping also holds its
    text's hash; ``prompts``: column -> its prompt (:func:`tokenize_texts`)."""
    prompts = prompts or {}
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise UsageError(f"columns {missing} not in the dataset (columns: {dataset.column_names})")

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[dict]]:
        encoded = {
            column: tokenize_texts(tokenizer, batch[column], max_seq_length, text_hashes, prompts.get(column, ""))
            for column in columns
        }
        return {
            column: [dict(zip(enc, row, strict=True)) for row in zip(*enc.values(), strict=True)]
            for column, enc in encoded.items()
        }

    return dataset.map(
        tokenize, batched=True, remove_columns=dataset.column_names, num_proc=num_proc, desc="Tokenizing"
    )


def tokenize_training_data(
    corpus: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    num_proc: int | None = None,
    text_hashes: bool = False,
    prompts: Mapping[str, str] | None = None,
) -> datasets.Dataset:
    """:func:`tokenize_corpus` for one text column, :func:`tokenize_columns` for supervised rows; ``text_hashes``:
    with each text's hash (duplicate masking); ``prompts``: column -> its prompt."""
    prompts = prompts or {}
    if is_supervised(corpus):
        return tokenize_columns(corpus, tokenizer, corpus.column_names, max_seq_length, num_proc, text_hashes, prompts)
    return tokenize_corpus(corpus, tokenizer, max_seq_length, num_proc, text_hashes, prompts.get(TEXT_COLUMN, ""))


def training_collator(
    tokenized: datasets.Dataset | None, tokenizer: PreTrainedTokenizerBase
) -> DataCollatorWithPadding | TextColumnsCollator:
    """The collator for :func:`tokenize_training_data`'s output (flat features or one mapping per column)."""
    if text_column_count(tokenized) > 1:
        return TextColumnsCollator(tokenizer)
    return DataCollatorWithPadding(tokenizer)


@dataclass
class TextColumnsCollator:
    """Rows of tokenised named columns -> ``{column: padded features}``, every column padded to the batch's
    longest sentence so that all rows of a step go through the encoder in one forward pass."""

    tokenizer: PreTrainedTokenizerBase

    def __call__(self, rows: list[dict[str, dict[str, list[int]]]]) -> dict[str, dict[str, torch.Tensor]]:
        columns = list(rows[0])
        longest = max(len(row[column]["input_ids"]) for row in rows for column in columns)
        return {
            column: dict(
                self.tokenizer.pad(
                    [row[column] for row in rows], padding="max_length", max_length=longest, return_tensors="pt"
                )
            )
            for column in columns
        }
