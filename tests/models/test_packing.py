"""Padding-free encoding: packed rows give the padded embeddings and gradients, for every pooler and the three
architectures, with LoRA and GradCache; unsupported encoders and settings are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    MPNetConfig,
    MPNetModel,
    RobertaConfig,
    RobertaModel,
)

from mixcse_hf.errors import UsageError
from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models import encoder as encoder_module
from mixcse_hf.models.batch import BatchEmbedder, embed_batch
from mixcse_hf.models.encoder import SentenceEncoder, embed
from mixcse_hf.models.lora import apply_lora
from mixcse_hf.models.packing import embed_packed, first_fit, pack_features
from mixcse_hf.models.pooling import POOLER_TYPES
from tests.conftest import SENTENCES, TINY_SHAPE, assert_same_grads, parameter_grads, train_tiny

ARCHITECTURES = {
    "bert": (BertConfig, BertModel),
    "roberta": (RobertaConfig, RobertaModel),
    "mpnet": (MPNetConfig, MPNetModel),
}
LENGTHS = [5, 17, 3, 11, 9, 20, 7, 2]


def _random_encoder(architecture: str) -> torch.nn.Module:
    config_class, model_class = ARCHITECTURES[architecture]
    torch.manual_seed(0)
    return model_class(config_class(vocab_size=100, max_position_embeddings=64, **TINY_SHAPE)).eval()


def _padded(model: torch.nn.Module, lengths: list[int]) -> dict[str, torch.Tensor]:
    """Random token ids, right-padded with the model's pad id, as a tokenizer pads a batch."""
    generator = torch.Generator().manual_seed(1)
    width = max(lengths)
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(3, 100, (len(lengths), width), generator=generator)
    return {"input_ids": ids.masked_fill(mask == 0, model.config.pad_token_id or 0), "attention_mask": mask}


@pytest.mark.parametrize("pooler", POOLER_TYPES)
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("pack_length", [20, 24, None])
def test_packed_embeddings_equal_padded(architecture: str, pooler: str, pack_length: int | None) -> None:
    model = _random_encoder(architecture)
    features = _padded(model, LENGTHS)
    with torch.no_grad():
        expected = embed(model, features, pooler)
        actual = embed_packed(model, features, pooler, pack_length)
    assert (actual - expected).abs().max().item() < 1e-5


def test_rows_have_no_padding_and_each_sentence_sees_only_itself() -> None:
    model = _random_encoder("roberta")
    packed = pack_features(_padded(model, LENGTHS), 24, first_position=2, mask_dtype=torch.bool)
    rows, width = packed.features["input_ids"].shape
    assert width <= 24 and rows < len(LENGTHS)
    assert packed.real_token_share > sum(LENGTHS) / (len(LENGTHS) * max(LENGTHS))
    starts = packed.index[:, 0]
    positions = packed.features["position_ids"].reshape(-1)
    assert positions[starts].tolist() == [2] * len(LENGTHS)  # RoBERTa counts from padding_idx + 1
    mask = packed.features["attention_mask"][:, 0].reshape(rows, width, width)
    first_row = [i for i, start in enumerate(starts.tolist()) if start < width]
    for i in first_row:
        tokens = packed.index[i, : LENGTHS[i]]
        assert int(mask[0][tokens % width][:, tokens % width].sum()) == LENGTHS[i] ** 2
        assert int(mask[0][tokens % width].sum()) == LENGTHS[i] ** 2  # no key outside the sentence


def test_first_fit_places_every_sentence_once_within_the_row_length() -> None:
    rows, starts, used = first_fit(LENGTHS, 24)
    cells = {
        (row, start + offset)
        for row, start, length in zip(rows, starts, LENGTHS, strict=True)
        for offset in range(length)
    }
    assert len(cells) == sum(LENGTHS)
    assert all(column < 24 for _, column in cells)
    assert sum(used) == sum(LENGTHS)


def test_training_gradients_equal_padded(tiny_model_dir: str) -> None:
    """MixCSE's loss and every parameter gradient through the packed forward equal the padded ones (dropout off)."""
    loss_fn = MixCSELoss(temp=0.05, mix_lambda=0.2)
    batch = {"text": dict(AutoTokenizer.from_pretrained(tiny_model_dir)(SENTENCES, padding=True, return_tensors="pt"))}
    results = []
    for padding_free in (False, True):
        model = AutoModel.from_pretrained(tiny_model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        loss = loss_fn(*embed_batch(model.train(), batch, "cls", padding_free, pack_length=40))
        loss.backward()
        results.append((loss.item(), parameter_grads(model)))
    assert results[1][0] == pytest.approx(results[0][0], abs=1e-6)
    assert_same_grads(results[0][1], results[1][1], tolerance=1e-5)


def test_lora_and_gradcache_pack_too(tiny_model_dir: str) -> None:
    """LoRA (the MLP trained in full through modules_to_save), and GradCache mini-batches packed one by one: the
    gradients of one packed pass (dropout off: mini-batches pack differently, so they draw other masks)."""
    encoder = AutoModel.from_pretrained(tiny_model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = apply_lora(encoder, r=4, alpha=8, dropout=0.0).double().train()
    batch = {"text": dict(AutoTokenizer.from_pretrained(tiny_model_dir)(SENTENCES, padding=True, return_tensors="pt"))}
    with torch.no_grad():
        padded = embed(model.eval(), batch["text"], "cls")
        packed = embed_packed(model, batch["text"], "cls")
    assert (packed - padded).abs().max().item() < 1e-10
    model.train()
    loss_fn = MixCSELoss(temp=0.05, mix_lambda=0.2)
    embedder = BatchEmbedder(model, "cls", padding_free=True)
    loss_fn(*embedder(batch)).backward()
    expected = parameter_grads(model)
    model.zero_grad()
    CachedLoss(loss_fn, 5)(embedder, batch).backward()
    assert_same_grads(expected, parameter_grads(model), tolerance=1e-10)


def test_unsupported_encoder_is_one_line_error() -> None:
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    model = DistilBertModel(config)
    with pytest.raises(UsageError, match=r"padding_free does not support DistilBERT \(distilbert\)"):
        embed_packed(model, _padded(_random_encoder("bert"), LENGTHS), "avg")


def test_sentence_longer_than_a_row_is_refused() -> None:
    model = _random_encoder("bert")
    with pytest.raises(UsageError, match="20 tokens, more than pack_length 16"):
        embed_packed(model, _padded(model, LENGTHS), "avg", 16)


def test_run_mixcse_trains_padding_free(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row_lengths = []

    def spy(
        model: torch.nn.Module, features: dict, pooler: str, pack_length: int | None, prompt_lengths: object = None
    ) -> torch.Tensor:
        row_lengths.append(pack_length)
        return embed_packed(model, features, pooler, pack_length, prompt_lengths)

    monkeypatch.setattr(encoder_module, "embed_packed", spy)
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--padding_free", "true", "--pack_length", "64")
    assert (out / "model.safetensors").is_file()
    assert row_lengths == [64, 64]  # both training steps packed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pack_length", "64"], "pack_length applies to padding_free training"),
        (["--padding_free", "true", "--pack_length", "8"], "pack_length 8 is shorter than max_seq_length 32"),
    ],
)
def test_bad_packing_settings_stop_before_writing(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--debug", *flags)
    assert not (tmp_path / "out").exists()


def test_sentence_encoder_padding_free_gives_the_same_embeddings(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed_batches = []

    def spy(
        model: torch.nn.Module, features: dict, pooler: str, pack_length: int | None, prompt_lengths: object = None
    ) -> torch.Tensor:
        packed_batches.append(features["input_ids"].size(0))
        return embed_packed(model, features, pooler, pack_length, prompt_lengths)

    monkeypatch.setattr(encoder_module, "embed_packed", spy)
    expected = SentenceEncoder.from_pretrained(tiny_model_dir, "avg_first_last").encode(SENTENCES, batch_size=5)
    packed = SentenceEncoder.from_pretrained(tiny_model_dir, "avg_first_last")
    packed.padding_free = True
    actual = packed.encode(SENTENCES, batch_size=5)
    assert packed_batches == [5, 5, 2]
    assert (actual - expected).abs().max().item() < 1e-5
