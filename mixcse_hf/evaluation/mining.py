"""Hard negatives for (anchor, positive) pairs, mined with any :class:`SentenceEncoder` in bounded memory.

The candidates are the positives of all rows (and optionally the sentences of a separate corpus), each distinct
text once. Every anchor is scored against every candidate (cosine similarity of L2-normalised embeddings), the
candidates that could be false negatives are removed, and the best of the rest become the anchor's negatives.

**Why not sentence-transformers' miner as it is.** ``sentence_transformers.util.mine_hard_negatives`` encodes
the whole corpus into one in-memory array (``encode_document``; its ``cache_folder`` loads it whole again) and
needs a ``SentenceTransformer``. Calling it per corpus chunk would not give the same result: ``range_min`` ranks
over the whole corpus, not over one chunk. So this module runs its own chunked exact search and follows that
function's filter definitions to the letter (same expressions, same order; ``tests/cli/test_mine.py`` checks the
negatives against it, given a thin SentenceTransformer-like view of the same encoder). What it adds:

- memory bounded by the chunk size: candidate embeddings go to a file on disk (float32 or float16), anchors are
  encoded ``chunk_size`` at a time, and each anchor chunk is scored against the candidates one chunk at a time with
  a running top-k; besides the chunks, memory holds about 40 bytes per candidate and per pair (the hashes and
  offsets below), never an embedding per candidate;
- an exact search with no ``range_max``: the running top-k keeps ``range_min + num_negatives`` candidates that
  passed the filters, so a row lacks negatives only when fewer than that pass them;
- exact duplicates out: a candidate whose text equals the anchor's or the positive's (or another positive of the
  same anchor) after :func:`duplicate_key` is never a negative, and candidates are de-duplicated by that key too
  (sentence-transformers compares raw text, and not with the anchor).

The filters, for a candidate of score ``s`` against an anchor whose positive scores ``p`` (an anchor on several
rows: the lowest of its positives' scores, as sentence-transformers does; a row reports its own positive's score
and that lowest one apart), in this order:

- duplicates and the anchor's positives are removed;
- ``absolute_margin`` m: removed when ``s + m > p``;
- ``relative_margin`` r: removed when ``s > p - |p| * r`` (kept: at most ``1 - r`` of a positive ``p``);
- ``max_score`` / ``min_score``: removed when ``s > max_score`` / ``s < min_score``;
- ``range_min`` k: the k best-scoring candidates left are skipped; the next ``num_negatives`` are the negatives.
"""

from __future__ import annotations

import array
import math
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mixcse_hf.errors import UsageError
from mixcse_hf.models.batch import hash64
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.text_files import batched


def duplicate_key(text: str) -> str:
    """What two texts share when they are the same sentence: Unicode NFKC, case-folded, each run of whitespace one
    space, none at either end."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def key_hash(text: str) -> int:
    """A signed 64-bit hash of :func:`duplicate_key`. Equal keys always hash alike, so a duplicate is always caught;
    a collision of different keys (odds 2**-64 a pair) could only drop a candidate, never let a duplicate in."""
    return hash64(duplicate_key(text))


@dataclass(frozen=True)
class NegativeFilters:
    """What a negative must pass (see the module docstring; ``None``: that filter is off)."""

    num_negatives: int = 1
    range_min: int = 0
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None

    def check(self) -> None:
        """A one-line :class:`UsageError` naming the option (``--name``) of a value out of range."""
        if self.num_negatives < 1:
            raise UsageError(f"--num_negatives must be >= 1, got {self.num_negatives}")
        if self.range_min < 0:
            raise UsageError(f"--range_min must be >= 0, got {self.range_min}")
        bounds = {
            "absolute_margin": (0.0, 2.0),
            "relative_margin": (0.0, 1.0),
            "max_score": (-1.0, 1.0),
            "min_score": (-1.0, 1.0),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise UsageError(f"--{name} must be a number from {low:g} to {high:g} (cosine scale), got {value}")
        if self.max_score is not None and self.min_score is not None and self.min_score >= self.max_score:
            raise UsageError(f"--min_score {self.min_score} must be below --max_score {self.max_score}")

    @property
    def depth(self) -> int:
        """How many passing candidates the running top-k keeps per anchor."""
        return self.range_min + self.num_negatives

    def remove(self, scores: torch.Tensor, positive_scores: torch.Tensor) -> None:
        """Set to ``-inf``, in place, the ``scores`` (B, C) the margins and score bounds remove, given each row's
        positive score (B,); sentence-transformers' expressions."""
        positive = positive_scores[:, None]
        removed = torch.zeros_like(scores, dtype=torch.bool)
        if self.absolute_margin is not None:
            removed |= scores + self.absolute_margin > positive
        if self.relative_margin is not None:
            removed |= scores > positive - positive.abs() * self.relative_margin
        if self.max_score is not None:
            removed |= scores > self.max_score
        if self.min_score is not None:
            removed |= scores < self.min_score
        scores.masked_fill_(removed, -math.inf)


@dataclass(frozen=True)
class MinedRow:
    """One output row: input row ``row`` (0-based, blank rows not counted) with one of its negatives."""

    row: int
    anchor: str
    positive: str
    negative: str
    positive_score: float
    negative_score: float
    min_positive_score: float
    """The lowest score of the anchor's positives (its own where it has one): the ``p`` the filters compare with."""


Pairs = Callable[[], Iterable[tuple[str, str]]]
"""A fresh iterator over the (anchor, positive) rows at each call: the rows are read three times."""
Sentences = Callable[[], Iterable[str]]


@dataclass
class MiningIndex:
    """What one reading of the inputs found: per row the hashes of its anchor and positive, per distinct candidate
    its place; :func:`index_inputs` builds it before anything is encoded or written."""

    pairs: Pairs
    corpus: Sentences | None
    anchor_hashes: np.ndarray
    positive_hashes: np.ndarray
    candidate_keep: np.ndarray
    """For each candidate as read (the positives in row order, then the corpus): whether it is the first of its key."""
    sorted_hashes: np.ndarray
    sorted_places: np.ndarray
    """The distinct candidate hashes, sorted, and the place of each in the store (order of first reading)."""

    @property
    def rows(self) -> int:
        return len(self.anchor_hashes)

    @property
    def candidates(self) -> int:
        return len(self.sorted_hashes)

    def places(self, hashes: np.ndarray) -> np.ndarray:
        """The store place of the candidate with each hash, ``-1`` where none has it."""
        found = np.searchsorted(self.sorted_hashes, hashes).clip(max=max(self.candidates - 1, 0))
        hit = self.sorted_hashes[found] == hashes if self.candidates else np.zeros(len(hashes), bool)
        return np.where(hit, self.sorted_places[found], -1)

    def candidate_texts(self) -> Iterator[str]:
        """The distinct candidates in store order."""
        keep = iter(self.candidate_keep.tolist())
        for _, positive in self.pairs():
            if next(keep):
                yield positive
        for text in self.corpus() if self.corpus is not None else ():
            if next(keep):
                yield text


def index_inputs(
    pairs: Pairs,
    corpus: Sentences | None = None,
    check_text: Callable[[str, str], None] | None = None,
    what: str = "the input",
) -> MiningIndex:
    """Read every row and corpus sentence once: hashes, distinct candidates. ``check_text(text, where)`` (where:
    ``"row N"`` or ``"corpus sentence N"``, from 1) may refuse a text with a :class:`UsageError`; no rows (``what``
    names the input) is one."""
    anchors, positives, candidates = array.array("q"), array.array("q"), array.array("q")
    for number, (anchor, positive) in enumerate(pairs(), start=1):
        if check_text is not None:
            check_text(anchor, f"row {number}")
            check_text(positive, f"row {number}")
        anchors.append(key_hash(anchor))
        positives.append(key_hash(positive))
    if not anchors:
        raise UsageError(f"{what} holds no (anchor, positive) rows with both fields non-blank")
    candidates.extend(positives)
    for number, text in enumerate(corpus() if corpus is not None else (), start=1):
        if check_text is not None:
            check_text(text, f"corpus sentence {number}")
        candidates.append(key_hash(text))
    stream = np.frombuffer(candidates, dtype=np.int64)
    sorted_hashes, first = np.unique(stream, return_index=True)
    keep = np.zeros(len(stream), dtype=bool)
    keep[first] = True
    place_of_read = np.cumsum(keep) - 1
    return MiningIndex(
        pairs=pairs,
        corpus=corpus,
        anchor_hashes=np.frombuffer(anchors, dtype=np.int64).copy(),
        positive_hashes=np.frombuffer(positives, dtype=np.int64).copy(),
        candidate_keep=keep,
        sorted_hashes=sorted_hashes,
        sorted_places=place_of_read[first],
    )


class CandidateStore:
    """The distinct candidates on disk under ``directory``: their texts (UTF-8, an offset each in memory) and their
    normalised embeddings (rows of ``dtype``), read back a chunk or a few rows at a time."""

    def __init__(self, directory: str, dimension: int, dtype: str = "float32") -> None:
        self.dimension, self.dtype = dimension, np.dtype(dtype)
        self.row_bytes = dimension * self.dtype.itemsize
        self.texts = open(os.path.join(directory, "candidates.txt"), "w+b")  # noqa: SIM115 (closed in close())
        self.embeddings = open(os.path.join(directory, "candidates.emb"), "w+b")  # noqa: SIM115
        self.offsets = array.array("q", [0])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add(self, texts: list[str], embeddings: torch.Tensor) -> None:
        for text in texts:
            self.offsets.append(self.offsets[-1] + self.texts.write(text.encode("utf-8")))
        self.embeddings.write(embeddings.numpy().astype(self.dtype).tobytes())

    def flush(self) -> None:
        self.texts.flush()
        self.embeddings.flush()

    def text(self, place: int) -> str:
        start, end = self.offsets[place], self.offsets[place + 1]
        return os.pread(self.texts.fileno(), end - start, start).decode("utf-8")

    def chunks(self, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first place, float32 embeddings (<= size, d))`` over the whole store, in order."""
        for start in range(0, len(self), size):
            count = min(size, len(self) - start)
            raw = os.pread(self.embeddings.fileno(), count * self.row_bytes, start * self.row_bytes)
            yield start, self._tensor(raw, count)

    def rows(self, places: np.ndarray) -> torch.Tensor:
        """The float32 embeddings at ``places``, in that order."""
        fd = self.embeddings.fileno()
        raw = b"".join(os.pread(fd, self.row_bytes, int(place) * self.row_bytes) for place in places)
        return self._tensor(raw, len(places))

    def _tensor(self, raw: bytes, count: int) -> torch.Tensor:
        values = np.frombuffer(raw, dtype=self.dtype).reshape(count, self.dimension)
        return torch.from_numpy(values.astype(np.float32))

    def close(self) -> None:
        self.texts.close()
        self.embeddings.close()


@dataclass
class MiningStats:
    """Counts for the summary line, final once :func:`mine` is exhausted."""

    rows: int = 0
    candidates: int = 0
    negatives: int = 0
    rows_short: int = 0
    """Rows with fewer than ``num_negatives`` negatives (some with none: they are left out of the output)."""
    rows_without: int = 0


def encode_candidates(
    encoder: SentenceEncoder,
    index: MiningIndex,
    store: CandidateStore,
    chunk_size: int,
    batch_size: int,
    on_batch: Callable[[int], object] | None = None,
) -> None:
    """Encode the distinct candidates ``chunk_size`` at a time (normalised) into ``store``."""
    for chunk in batched(index.candidate_texts(), chunk_size):
        store.add(chunk, encoder.encode(chunk, batch_size, False, normalize=True, on_batch=on_batch))
    store.flush()


class AnchorGroups:
    """Rows that share an anchor (by :func:`duplicate_key`): all their positives are that anchor's positives."""

    def __init__(self, anchor_hashes: np.ndarray) -> None:
        self.order = np.argsort(anchor_hashes, kind="stable")
        ordered = anchor_hashes[self.order]
        new = np.ones(len(ordered), dtype=bool)
        new[1:] = ordered[1:] != ordered[:-1]
        self.starts = np.flatnonzero(new)
        self.ends = np.append(self.starts[1:], len(ordered))
        self.group = np.empty(len(ordered), dtype=np.int64)
        self.group[self.order] = np.cumsum(new) - 1

    def members(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(i, member)``: for each ``rows[i]`` every row of its group (itself included), flattened."""
        group = self.group[rows]
        starts, sizes = self.starts[group], self.ends[group] - self.starts[group]
        owner = np.repeat(np.arange(len(rows)), sizes)
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return owner, self.order[np.repeat(starts, sizes) + offsets]


def mine(
    encoder: SentenceEncoder,
    index: MiningIndex,
    filters: NegativeFilters,
    work_dir: str,
    chunk_size: int = 4096,
    batch_size: int = 64,
    store_dtype: str = "float32",
    on_batch: Callable[[int], object] | None = None,
    stats: MiningStats | None = None,
) -> Iterator[MinedRow]:
    """The mined rows, in input order (a row's negatives best first); rows with no negative are left out.

    Candidate embeddings go to files in ``work_dir`` (removed by the caller); ``chunk_size`` anchors are scored at a
    time against ``chunk_size`` candidates at a time. ``on_batch(n)`` follows every encoded batch (candidates, then
    anchors); ``stats`` is filled in as rows are mined."""
    stats = stats if stats is not None else MiningStats()
    stats.rows, stats.candidates = index.rows, index.candidates
    store = CandidateStore(work_dir, encoder.dimension, store_dtype)
    try:
        encode_candidates(encoder, index, store, chunk_size, batch_size, on_batch)
        positive_places = index.places(index.positive_hashes)
        anchor_places = index.places(index.anchor_hashes)
        groups = AnchorGroups(index.anchor_hashes)
        first = 0
        for chunk in batched(index.pairs(), chunk_size):
            rows = np.arange(first, first + len(chunk))
            first += len(chunk)
            anchors = encoder.encode([a for a, _ in chunk], batch_size, False, normalize=True, on_batch=on_batch)
            positive_scores, scores, places = top_candidates(
                anchors, rows, store, positive_places, anchor_places, groups, filters, chunk_size
            )
            yield from chunk_rows(chunk, rows, positive_scores, scores, places, store, filters, stats)
    finally:
        store.close()


def top_candidates(
    anchors: torch.Tensor,
    rows: np.ndarray,
    store: CandidateStore,
    positive_places: np.ndarray,
    anchor_places: np.ndarray,
    groups: AnchorGroups,
    filters: NegativeFilters,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the anchors (B, d) of ``rows``: the scores (B, 2) of each row's own positive and of the lowest of its
    anchor's positives (the one the filters compare with), and the scores and store places (B, depth) of the best
    candidates that pass the filters, best first (``-inf`` where fewer pass)."""
    owner, members = groups.members(rows)
    positives = positive_places[members]
    similarity = (anchors[owner] * store.rows(positives)).sum(-1)
    lowest = torch.full((len(rows),), math.inf).scatter_reduce(0, torch.from_numpy(owner), similarity, reduce="amin")
    own = similarity[torch.from_numpy(members == rows[owner])]  # each row is once among its own group's members
    has_anchor = anchor_places[rows] >= 0
    excluded_rows = np.concatenate([owner, np.flatnonzero(has_anchor)])
    excluded_places = np.concatenate([positives, anchor_places[rows][has_anchor]])
    depth = filters.depth
    best_scores = torch.full((len(rows), depth), -math.inf)
    best_places = torch.full((len(rows), depth), -1, dtype=torch.long)
    for start, candidates in store.chunks(chunk_size):
        scores = anchors @ candidates.T
        inside = (excluded_places >= start) & (excluded_places < start + len(candidates))
        scores[excluded_rows[inside], excluded_places[inside] - start] = -math.inf
        filters.remove(scores, lowest)
        chunk_scores, chunk_places = torch.topk(scores, min(depth, len(candidates)), dim=1)
        merged_scores = torch.cat([best_scores, chunk_scores], dim=1)
        merged_places = torch.cat([best_places, chunk_places + start], dim=1)
        # stable: on a tie the candidate read first wins, in one chunk or many
        best_scores, order = torch.sort(merged_scores, dim=1, descending=True, stable=True)
        best_scores, best_places = best_scores[:, :depth], merged_places.gather(1, order[:, :depth])
    return torch.stack([own, lowest], dim=1), best_scores, best_places


def chunk_rows(
    chunk: list[tuple[str, str]],
    rows: np.ndarray,
    positive_scores: torch.Tensor,
    best_scores: torch.Tensor,
    places: torch.Tensor,
    store: CandidateStore,
    filters: NegativeFilters,
    stats: MiningStats,
) -> Iterator[MinedRow]:
    """The output rows of one anchor chunk: after ``range_min`` skipped, up to ``num_negatives`` per row."""
    kept_scores = best_scores[:, filters.range_min :].tolist()
    kept_places = places[:, filters.range_min :].tolist()
    positives = positive_scores.tolist()
    for i, (anchor, positive) in enumerate(chunk):
        found = [(s, p) for s, p in zip(kept_scores[i], kept_places[i], strict=True) if s != -math.inf]
        stats.negatives += len(found)
        stats.rows_short += len(found) < filters.num_negatives
        stats.rows_without += not found
        own, lowest = positives[i]
        for score, place in found:
            yield MinedRow(int(rows[i]), anchor, positive, store.text(place), own, score, lowest)
