"""Checkpoints load three ways (plain AutoModel, remote-code AutoModel, SentenceTransformer) with the same
embeddings, for every pooler that sentence-transformers can express."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.hub.export import REMOTE_CODE_FILE, export_checkpoint
from mixcse_hf.hub.push import published_adapter_config
from mixcse_hf.models.encoder import SentenceEncoder, load_adapter_model
from mixcse_hf.models.lora import apply_lora
from mixcse_hf.models.pooling import pool
from mixcse_hf.models.sentence_transformers_format import SENTENCE_TRANSFORMERS_FILES
from tests.conftest import SENTENCES, minilm_path, train_tiny

POOLER_RUNS = {
    "cls": ["--pooler_type", "cls"],
    "cls_before_pooler": ["--pooler_type", "cls", "--mlp_only_train", "true"],
    "avg": ["--pooler_type", "avg"],
}


def _three_ways(path: Path, pooler: str) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    plain = AutoModel.from_pretrained(path)
    remote = AutoModel.from_pretrained(path, trust_remote_code=True)
    assert type(plain).__name__ == "BertModel"
    assert type(remote).__name__ == "MixCSEBertModel"
    with torch.no_grad():
        embeddings = {
            "plain": pool(plain(**batch, output_hidden_states=True), batch["attention_mask"], pooler),
            "remote_code": remote(**batch).sentence_embedding,
        }
    embeddings["sentence_transformers"] = SentenceTransformer(str(path), device="cpu").encode(
        SENTENCES, convert_to_tensor=True
    )
    embeddings["mixcse_hf"] = SentenceEncoder.from_pretrained(str(path)).encode(SENTENCES)
    return embeddings


@pytest.mark.smoke
@pytest.mark.parametrize("pooler", sorted(POOLER_RUNS))
def test_three_loaders_agree(pooler: str, tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", *POOLER_RUNS[pooler])
    for directory in (out, out / "checkpoint-1"):
        assert (directory / REMOTE_CODE_FILE).is_file()
        assert (directory / "modules.json").is_file()
        assert (directory / "README.md").is_file()
        embeddings = _three_ways(directory, pooler)
        reference = embeddings.pop("plain")
        for name, values in embeddings.items():
            difference = (values.cpu() - reference).abs().max().item()
            assert difference <= 1e-5, f"{name} differs from plain AutoModel by {difference}"
    assert SentenceEncoder.from_pretrained(str(out)).pooler_type == pooler
    assert (out / "2_Dense").is_dir() == (pooler == "cls")


def test_trained_mlp_is_in_the_checkpoint(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """The MLP trained by MixCSE is the saved pooler (not the starting one), and it is the Dense module."""
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--pooler_type", "cls")
    start = AutoModel.from_pretrained(tiny_model_dir).pooler.dense.weight
    saved = AutoModel.from_pretrained(out).pooler.dense.weight
    dense = SentenceTransformer(str(out), device="cpu")[2].linear.weight
    assert not torch.equal(start, saved)
    assert torch.equal(saved, dense)


def test_pooler_without_sentence_transformers_equivalent(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path
) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--pooler_type", "avg_top2")
    assert not any((out / name).exists() for name in SENTENCE_TRANSFORMERS_FILES)
    assert "no sentence-transformers equivalent" in (out / "README.md").read_text()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = AutoModel.from_pretrained(out)(**batch, output_hidden_states=True)
        remote = AutoModel.from_pretrained(out, trust_remote_code=True)(**batch).sentence_embedding
    assert torch.allclose(pool(plain, batch["attention_mask"], "avg_top2"), remote, atol=1e-6)


def test_resume_from_checkpoint_with_custom_code(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """A checkpoint carrying modeling_mixcse.py and auto_map resumes like any Trainer checkpoint."""
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--pooler_type", "cls")
    resumed = train_tiny(
        tiny_model_dir,
        tiny_corpus,
        out,
        *("--max_steps", "3", "--resume_changed_settings", "max_steps"),
        *("--resume_from_checkpoint", str(out / "checkpoint-2")),
    )
    assert (resumed / "checkpoint-3" / REMOTE_CODE_FILE).is_file()


def test_adapter_names_a_packaged_base_locally_and_by_hub_id_for_the_hub(tmp_path: Path) -> None:
    """A LoRA adapter on the quick-start model (loaded from its package's local copy) keeps that local path in a
    folder saved by training, where the loaders find it offline, and records the Hub id in what a push uploads,
    where mixcse_hf still loads it offline (the id resolves to the installed package)."""
    model = apply_lora(AutoModel.from_pretrained(minilm_path()), r=2, alpha=4, dropout=0.0)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    export_checkpoint(str(adapter), model)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == minilm_path()
    (adapter / "adapter_config.json").write_bytes(published_adapter_config(str(adapter)))  # the Hub copy's
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    loaded = load_adapter_model(str(adapter))
    features = AutoTokenizer.from_pretrained(minilm_path())(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**features).pooler_output, model.eval()(**features).pooler_output, atol=1e-6)
