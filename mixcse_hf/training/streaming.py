"""Streaming training data (``--streaming true``): rows read lazily from a text file, a table or a ``datasets``
source, never held or tokenised whole.

The stream is one endless sequence of rows: epoch after epoch of the corpus, each epoch shuffled with a buffer
(seeded by the run's seed and the epoch), blank rows dropped. It is cut into *global batches* of
``per_device_train_batch_size x processes`` rows. Dataloader worker ``w`` of ``W`` yields the global batches
``s + w, s + w + W, ...`` whole (``s``: the first batch, 0 unless resuming); accelerate's ``IterableDatasetShard``
then gives process ``p`` rows ``[p*B, (p+1)*B)`` of each, and the collator (:class:`TokenizingCollator`, in the
worker) tokenises only those. So every process and worker count sees the batches of one process holding the global
batch, each row of an epoch exactly once.

Resuming at optimizer step ``s`` starts the stream at global batch ``s x gradient_accumulation_steps``
(:attr:`StreamingCorpus.start_batch`): the skipped rows are read and shuffled again but not tokenised.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError
from mixcse_hf.text_files import TABLE_FORMATS, check_text_file, is_blank, read_lines
from mixcse_hf.training.data import (
    SUPERVISED_COLUMNS,
    TEXT_COLUMN,
    TableFileRows,
    TextColumnsCollator,
    check_dataset_name,
    detect_columns,
    table_options,
    tokenize_texts,
)

Row = tuple[str, ...]
UTF8_CHECKED_BYTES = 1 << 20
"""How much of a streamed text file is checked for UTF-8 before training; the rest is checked as it is read."""


@dataclass(frozen=True)
class TextFileRows:
    """One sentence per line of ``path``, the lines of :func:`mixcse_hf.text_files.read_lines` (those of map-style
    training), blank lines skipped."""

    path: str

    def __call__(self) -> Iterator[dict[str, Any]]:
        for _, text in read_lines(self.path, "train_file"):
            if not is_blank(text):
                yield {TEXT_COLUMN: text}


@dataclass(frozen=True)
class DatasetsRows:
    """The rows of ``datasets.load_dataset(*args, streaming=True, **kwargs)``: a table file or a Hub/local dataset."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Iterator[dict[str, Any]]:
        import datasets

        try:
            return iter(datasets.load_dataset(*self.args, streaming=True, **self.kwargs))
        except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
            raise UsageError(f"cannot stream {self.args[0]!r}: {str(err).splitlines()[0]}") from err


def row_source(
    train_file: str | None,
    dataset_name: str | None,
    dataset_config_name: str | None = None,
    dataset_split: str = "train",
) -> Callable[[], Iterator[dict[str, Any]]]:
    """A picklable callable that opens the training data afresh (once per epoch and worker) as dicts."""
    if train_file is not None:
        suffix = os.path.splitext(train_file)[1].lower()
        if suffix not in TABLE_FORMATS:
            check_text_file(train_file, utf8_bytes=UTF8_CHECKED_BYTES)
            return TextFileRows(train_file)
        builder, separator = TABLE_FORMATS[suffix]
        check_text_file(train_file, lines=False, utf8=builder != "parquet", utf8_bytes=UTF8_CHECKED_BYTES)
        options = table_options(train_file, separator) if builder == "csv" else {}
        rows = DatasetsRows((builder,), {"data_files": {"train": train_file}, "split": "train", **options})
        return TableFileRows(rows, train_file)
    check_dataset_name(dataset_name)
    return DatasetsRows((dataset_name, dataset_config_name), {"split": dataset_split})


def source_name(open_rows: Callable[[], Iterator[dict[str, Any]]]) -> str:
    """How errors name a row source of :func:`row_source`: its ``train_file`` or its dataset."""
    if isinstance(open_rows, TextFileRows | TableFileRows):
        return f"train_file {open_rows.path!r}"
    if isinstance(open_rows, DatasetsRows):
        return f"dataset {open_rows.args[0]!r}"
    return "the training data"


def as_text(value: Any, column: str) -> str | None:
    """A cell as text: strings as they are, numbers and booleans written out, missing values None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    raise UsageError(f"column {column!r} holds {type(value).__name__} values, not text; pick text columns")


class StreamingCorpus(torch.utils.data.IterableDataset):
    """The training rows as a stream: endless, shuffled with a buffer, dealt to workers in whole global batches, each
    within one epoch.

    Args:
        open_rows: a picklable callable returning an iterator of dicts over the corpus (:func:`row_source`).
        global_batch_size: rows per global batch (per-device batch x processes).
        shuffle_buffer_size: rows held for shuffling; 0 or 1 keeps the corpus order.
        seed: with the epoch, seeds the shuffle.
        text_column, text_columns: the columns to train on (:func:`~mixcse_hf.training.data.detect_columns`).
        max_rows: train on the first ``max_rows`` non-blank rows of the corpus only.

    Yields dicts ``{"text": str}`` (one column) or ``{"anchor", "positive"[, "negative"]: str}``, for
    :class:`TokenizingCollator`. :attr:`start_batch` skips that many global batches (resume).
    """

    def __init__(
        self,
        open_rows: Callable[[], Iterator[dict[str, Any]]],
        global_batch_size: int,
        shuffle_buffer_size: int,
        seed: int,
        text_column: str = TEXT_COLUMN,
        text_columns: Sequence[str] | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.open_rows = open_rows
        self.global_batch_size = global_batch_size
        self.shuffle_buffer_size = shuffle_buffer_size
        self.seed = seed
        self.max_rows = max_rows
        self.start_batch = 0
        first = next(open_rows(), None)
        if first is None:
            raise UsageError(f"{source_name(open_rows)} has no rows; it needs one row per example")
        self.source_columns = detect_columns(list(first), text_columns, text_column)
        count = len(self.source_columns)
        self.column_names = [TEXT_COLUMN] if count == 1 else list(SUPERVISED_COLUMNS[:count])

    def epoch_rows(self, epoch: int) -> Iterator[Row]:
        """One pass over the corpus: rows with no blank field, the first ``max_rows`` only, shuffled."""
        rows = (tuple(as_text(row.get(column), column) for column in self.source_columns) for row in self.open_rows())
        kept = (row for row in rows if not any(is_blank(text) for text in row))
        return self._shuffled(itertools.islice(kept, self.max_rows), epoch)

    def _shuffled(self, rows: Iterator[Row], epoch: int) -> Iterator[Row]:
        """The ``datasets`` buffer shuffle: each new row takes the place of a random buffered row, which is yielded."""
        if self.shuffle_buffer_size <= 1:
            yield from rows
            return
        rng = random.Random(self.seed * 1_000_003 + epoch)
        buffer: list[Row] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer_size:
                buffer.append(row)
                continue
            index = rng.randrange(len(buffer))
            yield buffer[index]
            buffer[index] = row
        rng.shuffle(buffer)
        yield from buffer

    def global_batches(self) -> Iterator[list[Row]]:
        """Whole global batches, epoch after epoch, endlessly. An epoch's last rows that fill no batch are dropped,
        as ``dataloader_drop_last`` drops them from map-style data: a batch never spans two epochs, so it never holds
        a row twice. A corpus with fewer rows than one global batch is refused."""
        for epoch in itertools.count():
            rows, batches = self.epoch_rows(epoch), 0
            while len(batch := list(itertools.islice(rows, self.global_batch_size))) == self.global_batch_size:
                batches += 1
                yield batch
            if batches == 0:
                raise UsageError(
                    f"the training data has {len(batch)} usable row(s), fewer than one batch of "
                    f"{self.global_batch_size}: add data or lower per_device_train_batch_size"
                )

    def has_one_batch(self) -> bool:
        """Whether the corpus holds at least one global batch of usable rows (reads only that far)."""
        first_rows = itertools.islice(self.epoch_rows(0), self.global_batch_size)
        return sum(1 for _ in first_rows) == self.global_batch_size

    def __iter__(self) -> Iterator[dict[str, str]]:
        worker = torch.utils.data.get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for index, batch in enumerate(self.global_batches()):
            # The DataLoader takes batches from its workers in turn, starting with worker 0.
            if index >= self.start_batch and (index - self.start_batch) % workers == worker_id:
                for row in batch:
                    yield dict(zip(self.column_names, row, strict=True))


@dataclass
class TokenizingCollator:
    """Raw rows of :class:`StreamingCorpus` -> the batch the map-style path feeds the trainer: tokenised (truncated to
    ``max_seq_length``) and padded by ``DataCollatorWithPadding`` (one column) or :class:`TextColumnsCollator`.
    ``text_hashes``: each column also carries its texts' hashes, as the map-style data stores them (duplicate
    masking); ``prompts``: column -> the prompt put before its texts."""

    tokenizer: PreTrainedTokenizerBase
    max_seq_length: int
    text_hashes: bool = False
    prompts: dict[str, str] = field(default_factory=dict)

    def __call__(self, rows: list[dict[str, str]]) -> dict[str, Any]:
        columns = list(rows[0])
        encoded = {
            column: tokenize_texts(
                self.tokenizer,
                [row[column] for row in rows],
                self.max_seq_length,
                self.text_hashes,
                self.prompts.get(column, ""),
            )
            for column in columns
        }
        features = {
            column: [dict(zip(enc, values, strict=True)) for values in zip(*enc.values(), strict=True)]
            for column, enc in encoded.items()
        }
        if columns == [TEXT_COLUMN]:
            return DataCollatorWithPadding(self.tokenizer)(features[TEXT_COLUMN])
        per_row = [{column: features[column][i] for column in columns} for i in range(len(rows))]
        return TextColumnsCollator(self.tokenizer)(per_row)
