"""GradCache: the same gradients as one pass with the same dropout masks; and bf16 autocast training."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.losses.cached import backward_from_cache, embed_without_graph, mini_batches
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.encoder import embed_two_views
from mixcse_hf.training import trainer as trainer_module
from tests.conftest import SENTENCES, train_tiny

LOSS = MixCSELoss(temp=0.05, mix_lambda=0.2)


def _model(model_dir: str, dropout: float) -> torch.nn.Module:
    model = AutoModel.from_pretrained(model_dir, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return model.double().train()


def _features(model_dir: str) -> dict[str, torch.Tensor]:
    return dict(AutoTokenizer.from_pretrained(model_dir)(SENTENCES, padding=True, return_tensors="pt"))


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _gradcache_grads(model: torch.nn.Module, features: dict, pooler: str, size: int) -> tuple[float, dict]:
    cached = embed_without_graph(model, features, pooler, size)
    z1, z2 = cached.z1.requires_grad_(), cached.z2.requires_grad_()
    loss = LOSS(z1, z2)
    grad_z1, grad_z2 = torch.autograd.grad(loss, [z1, z2])
    backward_from_cache(model, cached, grad_z1, grad_z2, pooler, torch.Tensor.backward, contextlib.nullcontext)
    return loss.item(), _grads(model)


def _assert_same(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert set(expected) == set(actual)
    for name, grad in expected.items():
        difference = (actual[name] - grad).abs().max().item()
        assert difference <= 1e-10, f"{name}: {difference}"


@pytest.mark.parametrize(("pooler", "size"), [("cls", 4), ("avg", 5), ("cls", 12)])
def test_gradcache_equals_one_pass_without_dropout(tiny_model_dir: str, pooler: str, size: int) -> None:
    model, features = _model(tiny_model_dir, 0.0), _features(tiny_model_dir)
    loss = LOSS(*embed_two_views(model, features, pooler))
    loss.backward()
    expected = _grads(model)
    cached_loss, actual = _gradcache_grads(model, features, pooler, size)
    assert cached_loss == pytest.approx(loss.item(), abs=1e-12)
    _assert_same(expected, actual)


def test_gradcache_replays_the_dropout_masks(tiny_model_dir: str) -> None:
    """With dropout on, GradCache equals a full-graph pass over the same mini-batches with the same masks."""
    model, features = _model(tiny_model_dir, 0.1), _features(tiny_model_dir)
    torch.manual_seed(123)
    views = [embed_two_views(model, chunk, "cls") for chunk in mini_batches(features, 5)]
    loss = LOSS(torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views]))
    loss.backward()
    expected = _grads(model)
    after_reference = torch.get_rng_state()

    torch.manual_seed(123)
    cached_loss, actual = _gradcache_grads(model, features, "cls", 5)
    assert cached_loss == pytest.approx(loss.item(), abs=1e-12)
    _assert_same(expected, actual)
    assert torch.equal(torch.get_rng_state(), after_reference)


def test_trainer_gradcache_matches_plain_training(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """Through run_mixcse.py without dropout: GradCache (mini-batches of 2) and plain steps give the same
    losses and weights."""
    no_dropout = ["--per_device_train_batch_size", "6", "--max_steps", "3", "--seed", "3"]
    runs = {}
    for name, extra in (("plain", []), ("gradcache", ["--gradcache_mini_batch_size", "2"])):
        out = train_tiny(_no_dropout_copy(tiny_model_dir, tmp_path), tiny_corpus, tmp_path / name, *no_dropout, *extra)
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
    original_embed, original_logits = trainer_module.embed_two_views, MixCSELoss.logits

    def recording_embed(model: torch.nn.Module, features: dict, pooler: str) -> tuple:
        if not inner_dtypes:
            query = model.get_submodule("encoder.layer.0.attention.self.query")
            query.register_forward_hook(lambda module, args, output: inner_dtypes.append(output.dtype))
        return original_embed(model, features, pooler)

    def recording_logits(self: MixCSELoss, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        logits = original_logits(self, z1, z2)
        logit_dtypes.append(logits.dtype)
        return logits

    monkeypatch.setattr(trainer_module, "embed_two_views", recording_embed)
    monkeypatch.setattr(MixCSELoss, "logits", recording_logits)
    flags = ["--bf16", "true", "--use_cpu", "true", "--max_steps", "3", "--logging_steps", "1"]
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", *flags)
    assert inner_dtypes and set(inner_dtypes) == {torch.bfloat16}
    assert logit_dtypes and set(logit_dtypes) == {torch.float32}
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
