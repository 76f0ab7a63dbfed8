"""LoRA runs: only adapters and the MLP train; adapter-only and merged checkpoints embed alike and load in
AutoModel and SentenceTransformer."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import AutoPeftModel
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.models.lora import apply_lora, count_parameters
from tests.conftest import SENTENCES, train_tiny


def test_only_adapters_and_mlp_are_trainable(tiny_model_dir: str) -> None:
    model = apply_lora(AutoModel.from_pretrained(tiny_model_dir), r=4, alpha=8, dropout=0.0)
    trainable_names = [name for name, p in model.named_parameters() if p.requires_grad]
    trainable, total = count_parameters(model)
    print(f"LoRA r=4 on the tiny BERT: {trainable} of {total} parameters trainable")
    assert trainable_names
    assert all("lora_" in name or ".pooler.modules_to_save." in name for name in trainable_names)
    assert any(".pooler.modules_to_save.default.dense.weight" in name for name in trainable_names)
    hidden, layers, r = 32, 2, 4
    assert trainable == layers * 2 * (2 * hidden * r) + hidden * hidden + hidden  # query+value A,B; pooler


def test_mlp_is_frozen_when_not_part_of_the_embedding(tiny_model_dir: str) -> None:
    model = apply_lora(AutoModel.from_pretrained(tiny_model_dir), r=4, alpha=8, dropout=0.0, train_mlp=False)
    assert all("lora_" in name for name, p in model.named_parameters() if p.requires_grad)


def test_adapter_and_merged_checkpoints_agree(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    lora = ["--use_lora", "true", "--lora_r", "4", "--pooler_type", "cls", "--seed", "7"]
    adapter_dir = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "adapter", *lora)
    merged_dir = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "merged", *lora, "--merge_lora", "true")
    assert (adapter_dir / "adapter_model.safetensors").is_file()
    assert not (adapter_dir / "model.safetensors").exists()
    assert (merged_dir / "model.safetensors").is_file()
    assert not (merged_dir / "adapter_config.json").exists()

    reference = SentenceEncoder(
        AutoPeftModel.from_pretrained(adapter_dir).merge_and_unload(),
        SentenceEncoder.from_pretrained(str(merged_dir)).tokenizer,
        "cls",
    ).encode(SENTENCES)
    loaded = {
        "adapter via AutoModel": SentenceEncoder.from_pretrained(str(adapter_dir)).encode(SENTENCES),
        "merged via AutoModel": SentenceEncoder.from_pretrained(str(merged_dir)).encode(SENTENCES),
        "adapter via SentenceTransformer": SentenceTransformer(str(adapter_dir), device="cpu").encode(
            SENTENCES, convert_to_tensor=True
        ),
        "merged via SentenceTransformer": SentenceTransformer(str(merged_dir), device="cpu").encode(
            SENTENCES, convert_to_tensor=True
        ),
    }
    for name, embeddings in loaded.items():
        difference = (embeddings.cpu() - reference).abs().max().item()
        assert difference <= 1e-4, f"{name}: max abs difference {difference}"


def test_lora_training_changes_only_adapters_and_mlp(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--use_lora", "true", "--merge_lora", "true")
    start, trained = AutoModel.from_pretrained(tiny_model_dir).state_dict(), AutoModel.from_pretrained(out).state_dict()
    changed = {name for name in start if not torch.equal(start[name], trained[name])}
    assert "pooler.dense.weight" in changed
    assert any("attention.self.query.weight" in name for name in changed)
    assert not any("intermediate" in name or "attention.self.key" in name for name in changed)
