"""Scores of a model on fixed data, cached (:func:`cached_scores`) by a fingerprint of the model's weights, its
tokenizer and the data, so that the start model of a run is encoded once however many runs start from it.

The cache lives in ``$MIXCSE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mixcse_hf``, i.e. ``~/.cache/mixcse_hf``), one
small JSON file per fingerprint; deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from mixcse_hf.output_files import read_json, write_json_atomically

CACHE_ENV = "MIXCSE_CACHE_DIR"
logger = logging.getLogger(__name__)


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get(CACHE_ENV) or os.path.join(base, "mixcse_hf")


def fingerprint(model: nn.Module, tokenizer: PreTrainedTokenizerBase, *settings: Any) -> str:
    """A hex digest of every weight (name, dtype, bytes), the tokenizer and ``settings`` (JSON-serialisable:
    the data, pooler, batch size…), plus the torch version whose kernels compute the scores."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    digest.update(_tokenizer_json(tokenizer).encode())
    digest.update(json.dumps([torch.__version__, *settings], default=str).encode())
    return digest.hexdigest()


def _tokenizer_json(tokenizer: PreTrainedTokenizerBase) -> str:
    """The vocabulary, normaliser and the rest of the tokenizer's pipeline; not the truncation and padding of its
    last call, which the tokenizer keeps in the same JSON."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return json.dumps(sorted(tokenizer.get_vocab().items()))
    pipeline = json.loads(backend.to_str())
    pipeline.pop("truncation", None)
    pipeline.pop("padding", None)
    return json.dumps(pipeline, sort_keys=True)


def _path(key: str) -> str:
    return os.path.join(cache_dir(), f"{key}.json")


def load_scores(key: str) -> dict[str, Any] | None:
    """The scores stored under ``key``, or None (absent or unreadable)."""
    return read_json(_path(key))


def save_scores(key: str, scores: dict[str, Any]) -> None:
    """Store ``scores`` under ``key`` (atomically); a cache that cannot be written is skipped with a warning."""
    try:
        write_json_atomically(_path(key), scores)
    except OSError as err:
        logger.warning("Could not cache scores in %s (%s); set %s to a writable directory", cache_dir(), err, CACHE_ENV)


def cached_scores(key: str, measure: Callable[[], dict[str, Any]], store: bool = True) -> tuple[dict[str, Any], bool]:
    """The scores cached under ``key``, else ``measure()``'s, cached under it when ``store``; and whether they
    came from the cache."""
    cached = load_scores(key)
    if cached is not None:
        return cached, True
    scores = measure()
    if store:
        save_scores(key, scores)
    return scores, False
