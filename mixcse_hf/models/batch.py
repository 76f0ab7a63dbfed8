"""Batches as named text columns, and embedding all of a step's rows in one forward pass.

A training batch maps column names to tokenised features (``input_ids``, ``attention_mask``…, each (N, L)):

- one column (``{"text": features}``, unsupervised): each sentence is encoded twice, and the two dropout views
  are two embeddings ``(z1, z2)``;
- several columns (``{"anchor": …, "positive": …[, "negative": …]}``): each column is encoded once, in order.

Every column of a batch has the same N rows and the same padded length L, so all 2N (or N x columns) rows go
through the encoder in a single forward pass, as SimCSE does.

A column may also carry :data:`TEXT_HASH` (N,), an int64 hash of each row's text (:func:`text_hash`), which the
encoder never sees: with duplicate masking the loss compares these to find in-batch candidates that repeat a row's
text (:func:`text_hashes` collects them).
"""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from mixcse_hf.models.encoder import embed

TextBatch = Mapping[str, Mapping[str, torch.Tensor]]
UNSUPERVISED_COLUMN = "text"
TEXT_HASH = "text_hash"
"""The key, in a column's features, of the per-row text hashes (never passed to the encoder)."""


def normalize_text(text: str) -> str:
    """What two texts must share to be duplicates: their NFKC form without leading or trailing whitespace."""
    return unicodedata.normalize("NFKC", text).strip()


def hash64(key: str) -> int:
    """A signed 64-bit hash of ``key`` (BLAKE2b, 8 bytes): stable across processes and runs, unlike Python's
    ``hash``."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def text_hash(text: str) -> int:
    """The :func:`hash64` of :func:`normalize_text` ``(text)``."""
    return hash64(normalize_text(text))


def text_hashes(batch: TextBatch) -> torch.Tensor | None:
    """The batch's text hashes, (N, columns) int64 with one column per text column in order, or ``None`` when
    the batch carries none."""
    if not all(TEXT_HASH in features for features in batch.values()):
        return None
    return torch.stack([features[TEXT_HASH] for features in batch.values()], dim=1)


def as_text_batch(inputs: Mapping) -> TextBatch:
    """The Trainer's batch as named columns: flat tokenised features (one text column, as the unsupervised
    corpus is stored) become ``{"text": features}``; a mapping of columns is returned as it is."""
    return {UNSUPERVISED_COLUMN: inputs} if "input_ids" in inputs else inputs


def batch_rows(batch: TextBatch) -> int:
    return next(iter(next(iter(batch.values())).values())).size(0)


def slice_rows(batch: TextBatch, start: int, stop: int) -> dict[str, dict[str, torch.Tensor]]:
    """Rows ``start:stop`` of every column."""
    return {column: {name: t[start:stop] for name, t in features.items()} for column, features in batch.items()}


def embed_batch(
    model: nn.Module,
    batch: TextBatch,
    pooler_type: str,
    padding_free: bool = False,
    pack_length: int | None = None,
    prompt_lengths: Mapping[str, int] | None = None,
) -> list[torch.Tensor]:
    """One forward pass over every row of ``batch`` -> one (N, d) embedding per view: ``[z1, z2]`` for a single
    column (dropout draws an independent mask per row, so rows i and N+i are two views of sentence i), else
    one per column in order. ``padding_free``: the rows are packed without pad tokens first
    (:mod:`mixcse_hf.models.packing`, rows of at most ``pack_length`` tokens). ``prompt_lengths``: column -> how
    many leading tokens of its rows are a prompt, left out of the pooling."""
    columns = list(batch) * 2 if len(batch) == 1 else list(batch)
    views = [batch[column] for column in columns]
    joined = {name: torch.cat([view[name] for view in views]) for name in views[0] if name != TEXT_HASH}
    lengths = None
    if prompt_lengths is not None:
        rows = batch_rows(batch)
        lengths = torch.tensor([prompt_lengths.get(column, 0) for column in columns]).repeat_interleave(rows)
    return list(embed(model, joined, pooler_type, padding_free, pack_length, lengths).chunk(len(views)))


@dataclass
class BatchEmbedder:
    """What a loss that embeds the batch itself (:class:`mixcse_hf.losses.base.BatchLoss`) gets from the trainer.

    Attributes:
        model: the model being trained (wrapped by DDP/FSDP where used).
        pooler_type: the training pooler.
        gather: concatenates a (N, d) tensor from every process, differentiably (identity on one process).
        no_sync: a context in which backward passes do not synchronise gradients across processes.
        padding_free: embed packed rows without pad tokens; ``pack_length`` bounds their length (None: twice the
            batch's padded length).
        gather_hashes: concatenates the (N, columns) text hashes from every process in the same order, without
            gradient (identity on one process).
        on_views: called with each call's local views (a check of the first step's, e.g.).
        prompt_lengths: column -> prompt tokens left out of the pooling (:func:`embed_batch`).
    """

    model: nn.Module
    pooler_type: str
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor
    no_sync: Callable[[], contextlib.AbstractContextManager] = field(default=contextlib.nullcontext)
    padding_free: bool = False
    pack_length: int | None = None
    gather_hashes: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor
    on_views: Callable[[list[torch.Tensor]], None] | None = None
    prompt_lengths: Mapping[str, int] | None = None

    def __call__(self, batch: TextBatch) -> list[torch.Tensor]:
        """The local embeddings of ``batch`` (see :func:`embed_batch`), not gathered."""
        views = embed_batch(
            self.model, batch, self.pooler_type, self.padding_free, self.pack_length, self.prompt_lengths
        )
        if self.on_views is not None:
            self.on_views(views)
        return views
