"""Training corpus: load one-sentence-per-line text (or any ``datasets`` dataset), drop blanks, tokenise once."""

from __future__ import annotations

import codecs
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
_BLANK = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]*")
"""Whitespace, control characters (NUL included) and invisible format characters: nothing to encode."""


def is_blank(text: str | None) -> bool:
    """True for ``None`` and for text made only of whitespace, control or zero-width characters."""
    return text is None or _BLANK.fullmatch(text) is not None


def check_text_file(path: str, what: str = "train_file") -> None:
    """Fail with a one-line :class:`UsageError` if ``path`` is missing, empty or not UTF-8."""
    if not os.path.exists(path):
        raise UsageError(f"{what} {path!r} does not exist; check the path (relative paths start at the cwd)")
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path!r} is not a file; pass a text file with one sentence per line")
    if os.path.getsize(path) == 0:
        raise UsageError(f"{what} {path!r} is empty; it needs one sentence per line")
    decoder = codecs.getincrementaldecoder("utf-8")()
    line_number = 1
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                line = line_number + block[: err.start].count(b"\n")
                raise UsageError(
                    f"{what} {path!r} is not valid UTF-8 (line {line}: {err.reason}); re-encode it, "
                    "e.g. iconv -f latin1 -t utf-8"
                ) from err
            line_number += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise UsageError(f"{what} {path!r} ends in a truncated UTF-8 sequence; re-encode it") from err


def load_corpus(
    train_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_split: str = "train",
    text_column: str = TEXT_COLUMN,
    max_train_samples: int | None = None,
) -> datasets.Dataset:
    """The unsupervised corpus as a ``Dataset`` with one column ``text``, blank rows removed.

    Either ``train_file`` (a text file, one sentence per line, as SimCSE's ``wiki1m_for_simcse.txt``) or
    ``dataset_name`` (anything ``datasets.load_dataset`` takes: a Hub id or a local data directory) with its
    ``text_column``. ``max_train_samples`` keeps the first rows only (after blank removal).
    """
    if (train_file is None) == (dataset_name is None):
        raise UsageError("set exactly one of train_file (a text file) or dataset_name (a datasets dataset)")
    if train_file is not None:
        check_text_file(train_file)
        corpus = datasets.load_dataset("text", data_files={"train": train_file}, split="train")
        source = train_file
    else:
        try:
            corpus = datasets.load_dataset(dataset_name, dataset_config_name, split=dataset_split)
        except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
            raise UsageError(f"cannot load dataset_name {dataset_name!r}: {str(err).splitlines()[0]}") from err
        source = dataset_name
        if text_column not in corpus.column_names:
            raise UsageError(
                f"dataset {dataset_name!r} has no column {text_column!r} (columns: {corpus.column_names}); "
                "set text_column"
            )
        corpus = corpus.select_columns([text_column])
        if text_column != TEXT_COLUMN:
            corpus = corpus.rename_column(text_column, TEXT_COLUMN)
    total = len(corpus)
    corpus = corpus.filter(
        lambda batch: [not is_blank(text) for text in batch[TEXT_COLUMN]],
        batched=True,
        desc="Dropping blank lines",
    )
    if len(corpus) == 0:
        raise UsageError(
            f"{source!r} contains only blank lines (whitespace or control characters); it needs one sentence per line"
        )
    logger.info("Corpus %s: %d sentences, %d blank lines skipped", source, len(corpus), total - len(corpus))
    if max_train_samples is not None:
        corpus = corpus.select(range(min(max_train_samples, len(corpus))))
    return corpus


def tokenize_corpus(
    corpus: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, num_proc: int | None = None
) -> datasets.Dataset:
    """Tokenise once (cached by ``datasets``), truncating to ``max_seq_length``; padding happens per batch."""
    return corpus.map(
        lambda batch: tokenizer(batch[TEXT_COLUMN], truncation=True, max_length=max_seq_length),
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
) -> datasets.Dataset:
    """Rows of named text columns (e.g. ``anchor``, ``positive``, ``negative``) -> one tokenised mapping per
    column, in ``columns`` order, for :class:`TextColumnsCollator`."""
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise UsageError(f"columns {missing} not in the dataset (columns: {dataset.column_names})")

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[dict]]:
        encoded = {column: tokenizer(batch[column], truncation=True, max_length=max_seq_length) for column in columns}
        return {
            column: [dict(zip(enc, row, strict=True)) for row in zip(*enc.values(), strict=True)]
            for column, enc in encoded.items()
        }

    return dataset.map(
        tokenize, batched=True, remove_columns=dataset.column_names, num_proc=num_proc, desc="Tokenizing"
    )


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
