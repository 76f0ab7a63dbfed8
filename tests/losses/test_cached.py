"""GradCache as a loss wrapper (CachedLoss): the same gradients as one pass with the same dropout masks, for every
pooler, with LoRA, through the trainer; and bf16 autocast training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models import batch as batch_module
from mixcse_hf.models.batch import BatchEmbedder, embed_batch, slice_rows
from mixcse_hf.models.lora import apply_lora
from mixcse_hf.models.pooling import POOLER_TYPES
from tests.conftest import SENTENCES, assert_same_grads, padded_columns, parameter_grads, train_tiny

LOSS = MixCSELoss(temp=0.05, mix_lambda=0.2)


def _model(model_dir: str, dropout: float, lora: bool = False) -> torch.nn.Module:
    model = AutoModel.from_pretrained(model_dir, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    if lora:
        model = apply_lora(model, r=4, alpha=8, dropout=0.0)
        torch.manual_seed(1)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # zero at init: give the adapters a gradient path through lora_A too
                torch.nn.init.normal_(parameter, std=0.02)
    return model.double().train()


def _batch(model_dir: str) -> dict[str, dict[str, torch.Tensor]]:
    return {"text": dict(AutoTokenizer.from_pretrained(model_dir)(SENTENCES, padding=True, return_tensors="pt"))}


def _cached_grads(model: torch.nn.Module, batch: dict, pooler: str, size: int, scale: float = 1.0) -> tuple:
    loss = CachedLoss(LOSS, size)(BatchEmbedder(model, pooler), batch)
    (loss * scale).backward()  # the Trainer divides by the accumulation steps (and fp16 scales) before backward
    return loss.item(), parameter_grads(model)


def _assert_same(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert_same_grads(expected, actual, tolerance=1e-10)


@pytest.mark.parametrize("pooler", POOLER_TYPES)
@pytest.mark.parametrize("size", [5, 12])
def test_cached_loss_equals_one_pass_without_dropout(tiny_model_dir: str, pooler: str, size: int) -> None:
    """Every pooler, several mini-batches (5, 5, 2) or one (12): the loss and parameter gradients of the plain
    loss over one forward pass, to 1e-10 in float64."""
    model, batch = _model(tiny_model_dir, 0.0), _batch(tiny_model_dir)
    loss = LOSS(*embed_batch(model, batch, pooler))
    loss.backward()
    expected = parameter_grads(model)
    cached_loss, actual = _cached_grads(model, batch, pooler, size)
    assert cached_loss == pytest.approx(loss.item(), abs=1e-12)
    _assert_same(expected, actual)


def test_cached_loss_with_lora_and_a_scaled_backward(tiny_model_dir: str) -> None:
    """LoRA adapters and the MLP (modules_to_save) get the plain gradients; a scaled backward (gradient
    accumulation) scales them."""
    model, batch = _model(tiny_model_dir, 0.0, lora=True), _batch(tiny_model_dir)
    (LOSS(*embed_batch(model, batch, "cls")) * 0.5).backward()
    expected = parameter_grads(model)
    assert any("lora_A" in name for name in expected) and any("modules_to_save" in name for name in expected)
    _, actual = _cached_grads(model, batch, "cls", 5, scale=0.5)
    _assert_same(expected, actual)


def test_cached_loss_replays_the_dropout_masks(tiny_model_dir: str) -> None:
    """With dropout on, GradCache equals a full-graph pass over the same mini-batches with the same masks, and
    leaves the RNG where that pass leaves it."""
    model, batch = _model(tiny_model_dir, 0.1), _batch(tiny_model_dir)
    torch.manual_seed(123)
    views = [embed_batch(model, slice_rows(batch, start, start + 5), "cls") for start in (0, 5, 10)]
    loss = LOSS(torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views]))
    loss.backward()
    expected = parameter_grads(model)
    after_reference = torch.get_rng_state()

    torch.manual_seed(123)
    cached_loss, actual = _cached_grads(model, batch, "cls", 5)
    assert cached_loss == pytest.approx(loss.item(), abs=1e-12)
    _assert_same(expected, actual)
    assert torch.equal(torch.get_rng_state(), after_reference)


def test_cached_loss_on_triplets_with_dropout(tiny_model_dir: str) -> None:
    """Triplets (anchor, positive, hard negative; mixed hard negatives and a hard-negative weight) with dropout
    on: GradCache equals a full-graph pass over the same mini-batches with the same masks."""
    triplet_loss = MixCSELoss(temp=0.05, mix_lambda=0.3, mixed_hard_negative=True, hard_negative_weight=0.5)
    model, tokenizer = _model(tiny_model_dir, 0.1), AutoTokenizer.from_pretrained(tiny_model_dir)
    columns = {"anchor": SENTENCES, "positive": SENTENCES[1:] + SENTENCES[:1], "negative": SENTENCES[::-1]}
    batch = padded_columns(tokenizer, columns)
    torch.manual_seed(7)
    views = [embed_batch(model, slice_rows(batch, start, start + 5), "avg") for start in (0, 5, 10)]
    loss = triplet_loss(*(torch.cat([v[column] for v in views]) for column in range(3)))
    loss.backward()
    expected = parameter_grads(model)
    torch.manual_seed(7)
    cached = CachedLoss(triplet_loss, 5)(BatchEmbedder(model, "avg"), batch)
    cached.backward()
    assert cached.item() == pytest.approx(loss.item(), abs=1e-12)
    _assert_same(expected, parameter_grads(model))


def test_cached_loss_wraps_a_loss_with_named_components(tiny_model_dir: str) -> None:
    """A dict-returning loss: the components' values come back and their sum backpropagates once."""

    class TwoParts(torch.nn.Module):
        def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"mixcse": LOSS(z1, z2), "norm": 0.01 * z1.pow(2).sum(dim=1).mean()}

    model, batch = _model(tiny_model_dir, 0.0), _batch(tiny_model_dir)
    plain = TwoParts()(*embed_batch(model, batch, "avg"))
    sum(plain.values()).backward()
    expected = parameter_grads(model)
    cached = CachedLoss(TwoParts(), 5)(BatchEmbedder(model, "avg"), batch)
    assert {name: value.item() for name, value in cached.items()} == pytest.approx(
        {name: value.item() for name, value in plain.items()}, abs=1e-12
    )
    sum(cached.values()).backward()
    _assert_same(expected, parameter_grads(model))


def test_trainer_gradcache_matches_plain_training(tiny_model_dir: str, tiny_triplets: Path, tmp_path: Path) -> None:
    """Through run_mixcse.py without dropout: GradCache (mini-batches of 2) and plain steps give the same
    losses and weights. On triplets: unsupervised training needs dropout (train_dropout), supervised does not."""
    no_dropout = ["--per_device_train_batch_size", "6", "--max_steps", "3", "--seed", "3"]
    runs = {}
    for name, extra in (("plain", []), ("gradcache", ["--gradcache_mini_batch_size", "2"])):
        out = train_tiny(
            _no_dropout_copy(tiny_model_dir, tmp_path), tiny_triplets, tmp_path / name, *no_dropout, *extra
        )
        runs[name] = AutoModel.from_pretrained(out).state_dict()
    difference = max((runs["plain"][k] - runs["gradcache"][k]).abs().max().item() for k in runs["plain"])
    assert difference <= 1e-5


def _no_dropout_copy(model_dir: str, tmp_path: Path) -> str:
    target = tmp_path / "no-dropout"
    if not target.exists():
        model = AutoModel.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model.save_pretrained(target)
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return str(target)


def test_bf16_autocast_trains_with_float32_logits(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--bf16 (with --use_cpu on CPU): the encoder's matmuls run in bfloat16 autocast, while the similarity
    logits and the loss are float32; the loss stays finite."""
    inner_dtypes: list[torch.dtype] = []
    logit_dtypes: list[torch.dtype] = []
    original_embed, original_logits = batch_module.embed_batch, MixCSELoss.logits

    def recording_embed(model: torch.nn.Module, batch: dict, pooler: str, *packing: object) -> list:
        if not inner_dtypes:
            query = model.get_submodule("encoder.layer.0.attention.self.query")
            query.register_forward_hook(lambda module, args, output: inner_dtypes.append(output.dtype))
        return original_embed(model, batch, pooler, *packing)

    def recording_logits(self: MixCSELoss, *embeddings: torch.Tensor) -> torch.Tensor:
        logits = original_logits(self, *embeddings)
        logit_dtypes.append(logits.dtype)
        return logits

    monkeypatch.setattr(batch_module, "embed_batch", recording_embed)
    monkeypatch.setattr(MixCSELoss, "logits", recording_logits)
    flags = ["--bf16", "true", "--use_cpu", "true", "--max_steps", "3", "--logging_steps", "1"]
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", *flags)
    assert inner_dtypes and set(inner_dtypes) == {torch.bfloat16}
    assert logit_dtypes and set(logit_dtypes) == {torch.float32}
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
