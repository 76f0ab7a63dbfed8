"""Batches as named text columns: one column gives two dropout views, several give one embedding each, all rows
in one forward pass; the collator pads every column of a batch to one length."""

from __future__ import annotations

import datasets
import torch

from mixcse_hf.models.batch import as_text_batch, embed_batch, slice_rows
from mixcse_hf.models.encoder import embed
from mixcse_hf.training.data import TextColumnsCollator, tokenize_columns
from tests.conftest import SENTENCES, tokenized


def test_one_column_gives_two_views_that_differ_by_dropout_only(tiny: tuple) -> None:
    model, tokenizer = tiny
    batch = as_text_batch(tokenized(tokenizer, SENTENCES[:5]))
    assert list(batch) == ["text"]
    model.train()
    z1, z2 = embed_batch(model, batch, "cls")
    assert z1.shape == z2.shape == (5, model.config.hidden_size)
    assert not torch.allclose(z1, z2)
    model.eval()
    with torch.no_grad():
        z1, z2 = embed_batch(model, batch, "cls")
        single = embed(model, batch["text"], "cls")
    assert torch.allclose(z1, z2, atol=1e-6)
    assert torch.allclose(z1, single, atol=1e-5)


def test_named_columns_are_embedded_once_each_in_order(tiny: tuple) -> None:
    model, tokenizer = tiny
    rows = {"anchor": SENTENCES[:4], "positive": SENTENCES[4:8], "negative": SENTENCES[8:12]}
    dataset = tokenize_columns(datasets.Dataset.from_dict(rows), tokenizer, list(rows), max_seq_length=16)
    batch = TextColumnsCollator(tokenizer)([dataset[i] for i in range(4)])
    assert list(batch) == ["anchor", "positive", "negative"]
    assert len({features["input_ids"].shape for features in batch.values()}) == 1  # one common length
    with torch.no_grad():
        embeddings = embed_batch(model, batch, "avg")
        alone = [embed(model, tokenized(tokenizer, sentences), "avg") for sentences in rows.values()]
    assert len(embeddings) == 3
    for joint, single in zip(embeddings, alone, strict=True):
        assert torch.allclose(joint, single, atol=1e-5)
    assert [part["anchor"]["input_ids"].size(0) for part in (slice_rows(batch, 0, 3), slice_rows(batch, 3, 6))] == [
        3,
        1,
    ]
