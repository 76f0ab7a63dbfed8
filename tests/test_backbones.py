"""The backbone matrix (docs/backbones.md): each family of :data:`mixcse_hf.models.families.FAMILIES`, as a tiny
random model (tests.conftest.BACKBONES), trains, saves, loads alike in every loader, runs the three commands,
takes LoRA on peft's targets, packs to the padded embeddings, and turns what does not apply into one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from transformers import AutoConfig, AutoModel, AutoTokenizer

from mixcse_hf.cli.encode import main as encode_main
from mixcse_hf.cli.evaluate import main as evaluate_main
from mixcse_hf.cli.mine import main as mine_main
from mixcse_hf.errors import UsageError
from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.batch import BatchEmbedder, embed_batch
from mixcse_hf.models.encoder import SentenceEncoder, embed, load_backbone
from mixcse_hf.models.families import FAMILIES, choose_padding_free, family_of, packing_refusal
from mixcse_hf.models.lora import apply_lora, default_target_modules
from mixcse_hf.models.packing import embed_packed
from mixcse_hf.models.pooling import POOLER_TYPES
from run_mixcse import main as train_main
from tests.conftest import (
    BACKBONES,
    SENTENCES,
    TRAINER_DEFAULTS,
    assert_same_grads,
    parameter_grads,
    without_dropout,
)
from tests.training.test_distributed import assert_two_processes_equal_one

MODEL_TYPES = sorted(BACKBONES)
DECODERS = [model_type for model_type in MODEL_TYPES if family_of(AutoConfig.for_model(model_type)).causal]


def _config(model_type: str) -> AutoConfig:
    return AutoConfig.for_model(model_type)


def _train(model_dir: str, corpus: Path, output_dir: Path, *flags: str) -> Path:
    """Three steps of unsupervised MixCSE with every setting the model's own (``auto``) unless ``flags`` say."""
    args = [
        *TRAINER_DEFAULTS,
        *("--model_name_or_path", model_dir, "--train_file", str(corpus), "--output_dir", str(output_dir)),
        *("--max_steps", "3", "--per_device_train_batch_size", "4", "--save_strategy", "no", "--logging_steps", "1"),
        *("--report_to", "none", "--do_train", "true", "--precision", "fp32", *flags),
    ]
    assert train_main(args) == 0
    return output_dir


def _logged_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def _changed_weights(base_dir: str, trained_dir: Path) -> int:
    before, after = load_file(f"{base_dir}/model.safetensors"), load_file(str(trained_dir / "model.safetensors"))
    return sum(not torch.equal(before[name], after[name]) for name in after if name in before)


def _card_embedding(output_dir: Path, snippet_marker: str) -> torch.Tensor:
    card = (output_dir / "README.md").read_text(encoding="utf-8")
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", card, flags=re.S) if snippet_marker in s)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    return torch.as_tensor(namespace["embedding"])[0].float()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_family_trains_and_every_loader_gives_its_embedding(
    backbone_dirs: dict[str, str], tiny_corpus: Path, tmp_path: Path, model_type: str
) -> None:
    out = _train(backbone_dirs[model_type], tiny_corpus, tmp_path / "out")
    losses = _logged_losses(out)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert _changed_weights(backbone_dirs[model_type], out) > 0
    config = json.loads((out / "config.json").read_text())
    assert config["mixcse_pooler_type"] == family_pooler_of(model_type)

    sentence = "A man is playing a guitar."
    expected = SentenceEncoder.from_pretrained(str(out)).encode([sentence])[0]
    plain = _card_embedding(out, "output_hidden_states=True")
    remote = AutoModel.from_pretrained(str(out), trust_remote_code=True).eval()
    batch = AutoTokenizer.from_pretrained(str(out))([sentence], return_tensors="pt")
    with torch.no_grad():
        remote_embedding = remote(**batch).sentence_embedding[0]
    st_embedding = torch.as_tensor(SentenceTransformer(str(out), device="cpu").encode([sentence]))[0]
    for name, produced in {
        "card": plain,
        "remote code": remote_embedding,
        "sentence-transformers": st_embedding,
    }.items():
        assert (produced - expected).abs().max().item() <= 1e-5, name


def family_pooler_of(model_type: str) -> str:
    """The pooler ``auto`` gives a tiny random model: its family's default (``avg`` for ``cls`` without a pooler
    layer)."""
    default = family_of(_config(model_type)).default_pooler
    return "avg" if default == "cls" and model_type == "distilbert" else default


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_commands_run_on_each_family(
    backbone_dirs: dict[str, str], tiny_senteval: Path, tmp_path: Path, model_type: str, capsys
) -> None:
    model_dir = backbone_dirs[model_type]
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    assert encode_main([model_dir, str(sentences), str(tmp_path / "embeddings.npy")]) == 0
    import numpy as np

    expected = SentenceEncoder.from_pretrained(model_dir).encode(SENTENCES)
    np.testing.assert_allclose(np.load(tmp_path / "embeddings.npy"), expected.numpy(), rtol=0, atol=1e-5)
    report = tmp_path / "report.json"
    assert evaluate_main(["--model_name_or_path", model_dir, "--senteval_dir", str(tiny_senteval)]) == 0
    assert (
        evaluate_main(
            ["--model_name_or_path", model_dir, "--senteval_dir", str(tiny_senteval), "--output_json", str(report)]
        )
        == 0
    )
    assert json.loads(report.read_text())["pooler"] == SentenceEncoder.from_pretrained(model_dir).pooler_type
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("anchor,positive\n" + "".join(f"{s},{s[::-1]}\n" for s in SENTENCES), encoding="utf-8")
    assert mine_main([model_dir, str(pairs), str(tmp_path / "triplets.csv")]) == 0
    assert len((tmp_path / "triplets.csv").read_text().splitlines()) > 1
    capsys.readouterr()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_lora_takes_peft_targets_and_trains(backbone_dirs: dict[str, str], model_type: str) -> None:
    model, tokenizer = load_backbone(backbone_dirs[model_type], "auto", False)
    targets = default_target_modules(model.config)
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0, train_mlp=False)
    batch = {"text": dict(tokenizer(SENTENCES[:6], padding=True, return_tensors="pt"))}
    MixCSELoss(temp=0.05, mix_lambda=0.2)(
        *embed_batch(peft_model.train(), batch, model.config.mixcse_pooler_type)
    ).backward()
    adapted = {name for name, p in peft_model.named_parameters() if "lora_" in name and p.grad is not None}
    assert adapted and all(any(f".{target}." in name for target in targets) for name in adapted)
    assert any(p.grad.abs().sum() > 0 for name, p in peft_model.named_parameters() if "lora_B" in name)


def _dropout_off(model_dir: str, bidirectional: bool = False) -> torch.nn.Module:
    return without_dropout(load_backbone(model_dir, "auto", False, bidirectional)[0]).double().train()


def _padded_batch(model_dir: str) -> dict[str, torch.Tensor]:
    tokenizer = load_backbone(model_dir, "auto", False)[1]
    return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))


def _packing_cases() -> list[tuple[str, bool]]:
    return [(model_type, False) for model_type in MODEL_TYPES] + [(model_type, True) for model_type in DECODERS]


@pytest.mark.parametrize(("model_type", "bidirectional"), _packing_cases())
def test_packed_equals_padded_or_refuses(backbone_dirs: dict[str, str], model_type: str, bidirectional: bool) -> None:
    """Every pooler the model takes, causal and bidirectional: the packed embeddings are the padded ones."""
    model = _dropout_off(backbone_dirs[model_type], bidirectional)
    features = _padded_batch(backbone_dirs[model_type])
    refusal = packing_refusal(model.config)
    for pooler in POOLER_TYPES:
        try:
            load_backbone(backbone_dirs[model_type], pooler, False, bidirectional)
        except UsageError:
            continue
        with torch.no_grad():
            padded = embed(model, features, pooler)
            if refusal is not None:
                with pytest.raises(UsageError, match=re.escape(refusal)):
                    embed_packed(model, features, pooler)
                continue
            packed = embed_packed(model, features, pooler, pack_length=40)
        assert (packed - padded).abs().max().item() <= 1e-6, pooler  # decoders' RMSNorm computes in float32


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_gradcache_equals_one_pass(backbone_dirs: dict[str, str], model_type: str) -> None:
    model = _dropout_off(backbone_dirs[model_type])
    pooler = model.config.mixcse_pooler_type
    batch = {"text": _padded_batch(backbone_dirs[model_type])}
    loss_fn = MixCSELoss(temp=0.05, mix_lambda=0.2)
    embedder = BatchEmbedder(model, pooler)
    loss_fn(*embedder(batch)).backward()
    expected = parameter_grads(model)
    model.zero_grad()
    CachedLoss(loss_fn, 5)(embedder, batch).backward()
    assert_same_grads(expected, parameter_grads(model), tolerance=1e-6)  # decoders' RMSNorm computes in float32


@pytest.mark.parametrize(("model_type", "pooler"), [("modernbert", "avg"), ("qwen3", "last"), ("gemma3_text", "avg")])
def test_two_processes_equal_one_process(
    backbone_dirs: dict[str, str], tmp_path: Path, model_type: str, pooler: str
) -> None:
    """GradCache over packed rows on 2 processes gives the gradients of 1 process, plain and padded (to 1e-6: the
    decoders' RMSNorm computes in float32 even in a float64 model)."""
    assert_two_processes_equal_one(backbone_dirs[model_type], tmp_path, pooler, "text", True, True, tolerance=1e-6)


@pytest.mark.parametrize("model_type", [*DECODERS, "modernbert"])
@pytest.mark.parametrize("pooler", POOLER_TYPES)
@pytest.mark.parametrize("padding_free", ["true", "false"])
def test_every_pooler_and_packing_trains_or_refuses_in_one_line(
    backbone_dirs: dict[str, str], model_type: str, pooler: str, padding_free: str
) -> None:
    try:
        model, tokenizer = load_backbone(backbone_dirs[model_type], pooler, False)
        packed = choose_padding_free(padding_free, model.config, 32)
    except UsageError as err:
        assert "\n" not in str(err) and ("use one of" in str(err) or "--padding_free false" in str(err))
        return
    batch = {"text": dict(tokenizer(SENTENCES[:6], padding=True, return_tensors="pt"))}
    loss = MixCSELoss(temp=0.05, mix_lambda=0.2)(*embed_batch(model.train(), batch, pooler, packed))
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("model_type", DECODERS)
def test_decoders_refuse_the_first_token_and_the_mlp_naming_what_fits(
    backbone_dirs: dict[str, str], model_type: str
) -> None:
    for pooler in ("cls", "cls_before_pooler"):
        with pytest.raises(UsageError, match=r"use one of avg, avg_first_last, avg_top2, last$"):
            load_backbone(backbone_dirs[model_type], pooler, False)
    model, _ = load_backbone(backbone_dirs[model_type], "cls_before_pooler", False, bidirectional=True)
    assert model.config.is_causal is False


def test_bidirectional_is_for_decoders_only(backbone_dirs: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=r"BERT \(bert\) already attends both ways: unset bidirectional"):
        load_backbone(backbone_dirs["bert"], "auto", False, bidirectional=True)


def test_sliding_window_longer_than_a_sentence_does_not_pack(backbone_dirs: dict[str, str]) -> None:
    """Tiny ModernBERT's local layers see 32 tokens around a token: longer sentences stay padded (auto) or refuse."""
    config = load_backbone(backbone_dirs["modernbert"], "auto", False)[0].config
    assert choose_padding_free("auto", config, 32) is True
    assert choose_padding_free("auto", config, 33) is False
    with pytest.raises(UsageError, match="sliding-window layers see whole; max_seq_length is 33; pass"):
        choose_padding_free("true", config, 33)


@pytest.mark.parametrize("model_type", DECODERS)
def test_decoder_tokenizer_pads_with_eos_and_ends_with_it(
    backbone_dirs: dict[str, str], tmp_path: Path, model_type: str
) -> None:
    model_dir = backbone_dirs[model_type]
    assert AutoTokenizer.from_pretrained(model_dir).pad_token is None
    _, tokenizer = load_backbone(model_dir, "auto", False)
    assert tokenizer.pad_token == tokenizer.eos_token
    assert tokenizer("a man")["input_ids"][-1] == tokenizer.eos_token_id
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("a man")["input_ids"] == tokenizer("a man")["input_ids"]


def test_bidirectional_and_causal_differ_and_each_reloads_as_trained(
    backbone_dirs: dict[str, str], tiny_corpus: Path, tmp_path: Path
) -> None:
    model_dir = backbone_dirs["qwen3"]
    sentence = "a man is playing a guitar ."
    embeddings = {}
    for bidirectional in ("false", "true"):
        out = _train(model_dir, tiny_corpus, tmp_path / bidirectional, "--bidirectional", bidirectional)
        assert json.loads((out / "config.json").read_text()).get("is_causal", True) is (bidirectional == "false")
        expected = SentenceEncoder.from_pretrained(str(out)).encode([sentence])[0]
        st_embedding = torch.as_tensor(SentenceTransformer(str(out), device="cpu").encode([sentence]))[0]
        assert (st_embedding - expected).abs().max().item() <= 1e-5
        embeddings[bidirectional] = expected
    assert (embeddings["true"] - embeddings["false"]).abs().max().item() > 1e-3


def test_registry_lists_each_matrix_family() -> None:
    covered = {family_of(_config(model_type)).name for model_type in MODEL_TYPES}
    assert covered == set(FAMILIES)


def backbone_table() -> str:
    """The family table of docs/backbones.md, from the registry."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    rows = [
        "| family | model types | attention | `pooler_type: auto` | `padding_free: auto` | LoRA targets |",
        "|---|---|---|---|---|---|",
    ]
    for family in FAMILIES.values():
        peft_targets = {tuple(PEFT_TARGETS[t]) for t in family.model_types if t in PEFT_TARGETS}
        targets = (
            f"{', '.join(peft_targets.pop())} (peft)"
            if peft_targets
            else f"{', '.join(family.lora_target_modules or ())} (ours: peft lists none)"
        )
        attention = "causal; `bidirectional: true` lifts it" if family.causal else "both ways"
        pooler = f"`{family.default_pooler}`" + (
            " (`avg` without a pooler layer)" if family.default_pooler == "cls" else ""
        )
        packing = "on" if family.packs else "off (refused if true)"
        types = ", ".join(f"`{t}`" for t in family.model_types)
        rows.append(f"| {family.name} | {types} | {attention} | {pooler} | {packing} | {targets} |")
    return "\n".join(rows) + "\n"


def test_docs_table_is_the_registry() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "backbones.md").read_text(encoding="utf-8")
    table = docs.split("<!-- families -->\n", 1)[1].split("<!-- /families -->", 1)[0]
    assert table == backbone_table(), "docs/backbones.md: paste tests.test_backbones.backbone_table()"


@pytest.mark.parametrize("model_type", ["qwen3", "modernbert"])
def test_gradient_checkpointing_with_gradcache_and_packing_gives_the_plain_gradients(
    backbone_dirs: dict[str, str], model_type: str
) -> None:
    model = _dropout_off(backbone_dirs[model_type])
    pooler = model.config.mixcse_pooler_type
    batch = {"text": _padded_batch(backbone_dirs[model_type])}
    loss_fn = MixCSELoss(temp=0.05, mix_lambda=0.2)
    loss_fn(*BatchEmbedder(model, pooler)(batch)).backward()
    expected = parameter_grads(model)
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    CachedLoss(loss_fn, 5)(BatchEmbedder(model, pooler, padding_free=True), batch).backward()
    assert_same_grads(expected, parameter_grads(model), tolerance=1e-6)


@pytest.mark.parametrize("lora", [False, True])
def test_a_decoder_trains_checkpointed_cached_packed_in_bf16(
    backbone_dirs: dict[str, str], tiny_corpus: Path, tmp_path: Path, lora: bool
) -> None:
    flags = ["--activation_checkpointing", "true", "--gradcache_mini_batch_size", "2", "--padding_free", "true"]
    flags += ["--precision", "bf16", *(["--use_lora", "true", "--merge_lora", "true"] if lora else [])]
    out = _train(backbone_dirs["qwen3"], tiny_corpus, tmp_path / "out", *flags)
    assert all(torch.isfinite(torch.tensor(_logged_losses(out))))
    assert _changed_weights(backbone_dirs["qwen3"], out) > 0


def test_training_loads_a_bf16_checkpoint_in_float32(backbone_dirs: dict[str, str], tmp_path: Path) -> None:
    """Decoders ship bf16: the optimizer must update float32 weights, with precision deciding the compute dtype."""
    AutoModel.from_pretrained(backbone_dirs["qwen3"]).to(torch.bfloat16).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(backbone_dirs["qwen3"]).save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).dtype == torch.bfloat16
    assert load_backbone(str(tmp_path), "auto", False)[0].dtype == torch.float32


def test_a_bidirectional_qwen3_with_a_prompt_gives_one_embedding_in_every_loader(
    backbone_dirs: dict[str, str], tiny_corpus: Path, tmp_path: Path
) -> None:
    """The issue's acceptance case: ``last`` pooling, bidirectional, an instruction; AutoModel with the card's code
    (the prompt put first, as the card says), remote code, SentenceTransformer with ``prompt_name`` and
    ``mixcse-encode --prompt`` agree with the encoder."""
    prompt = "Instruct: find the same meaning\nQuery: "
    flags = ("--pooler_type", "last", "--bidirectional", "true", "--prompts", prompt)
    out = _train(backbone_dirs["qwen3"], tiny_corpus, tmp_path / "out", *flags)
    sentence = "A man is playing a guitar."
    expected = SentenceEncoder.from_pretrained(str(out)).encode([sentence])[0]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "bidirectional" in card and json.dumps(prompt) in card
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "output_hidden_states" in s)
    namespace: dict = {}
    exec(compile(snippet.replace(json.dumps(sentence), json.dumps(prompt + sentence)), "README.md", "exec"), namespace)
    produced = {"card": torch.as_tensor(namespace["embedding"])[0]}
    remote = AutoModel.from_pretrained(str(out), trust_remote_code=True).eval()
    with torch.no_grad():
        batch = AutoTokenizer.from_pretrained(str(out))([prompt + sentence], return_tensors="pt")
        produced["remote code"] = remote(**batch).sentence_embedding[0]
    st_model = SentenceTransformer(str(out), device="cpu")
    produced["sentence-transformers"] = torch.as_tensor(st_model.encode([sentence], prompt_name="text"))[0]
    text_file = tmp_path / "sentence.txt"
    text_file.write_text(sentence + "\n", encoding="utf-8")
    assert encode_main([str(out), str(text_file), str(tmp_path / "e.npy"), "--prompt", "text"]) == 0
    import numpy as np

    produced["mixcse-encode"] = torch.as_tensor(np.load(tmp_path / "e.npy"))[0]
    for name, embedding in produced.items():
        assert (embedding.float() - expected).abs().max().item() <= 1e-5, name
    without_prompt = torch.as_tensor(st_model.encode([sentence]))[0]  # the default prompt: the same
    assert (without_prompt - expected).abs().max().item() <= 1e-5


RUN_OFFLINE = (
    *("--senteval_dir", "null", "--do_eval", "false", "--eval_strategy", "no", "--save_strategy", "no"),
    *("--load_best_model_at_end", "false", "--metric_for_best_model", "null", "--max_steps", "2"),
    *("--per_device_train_batch_size", "4", "--precision", "fp32", "--logging_steps", "1"),
)
"""What the tests change in a shipped config besides the model and the data: no evaluation, two small steps."""


def test_the_modernbert_config_runs_on_a_tiny_modernbert(
    backbone_dirs: dict[str, str], tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(tmp_path))  # the config's data paths, overridden below
    out = tmp_path / "out"
    args = ["modernbert", "--model_name_or_path", backbone_dirs["modernbert"], "--train_file", str(tiny_corpus)]
    assert train_main([*args, "--output_dir", str(out), *RUN_OFFLINE]) == 0
    assert _changed_weights(backbone_dirs["modernbert"], out) > 0
    assert json.loads((out / "config.json").read_text())["mlp_dropout"] == 0.0  # trained with 0.1, saved as shipped


def test_the_decoder_lora_config_runs_on_a_tiny_qwen3(
    backbone_dirs: dict[str, str], tiny_triplets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(tmp_path))  # the config's data paths, overridden below
    out = tmp_path / "out"
    data = ("--dataset_name", "null", "--dataset_config_name", "null", "--max_train_samples", "null")
    data += ("--train_file", str(tiny_triplets), "--text_columns", "sent0", "sent1", "hard_neg")
    args = ["decoder_lora", "--model_name_or_path", backbone_dirs["qwen3"], *data, "--output_dir", str(out)]
    assert train_main([*args, *RUN_OFFLINE, "--gradcache_mini_batch_size", "2"]) == 0
    assert (out / "adapter_model.safetensors").is_file()
    prompts = json.loads((out / "config_sentence_transformers.json").read_text())["prompts"]
    assert list(prompts) == ["anchor"] and prompts["anchor"].startswith("Instruct:")
    st_model = SentenceTransformer(str(out), device="cpu")
    sentence = "A man is playing a guitar."
    expected = SentenceEncoder.from_pretrained(str(out), prompt_name="anchor").encode([sentence])[0]
    embedding = torch.as_tensor(st_model.encode([sentence], prompt_name="anchor"))[0]
    assert (embedding - expected).abs().max().item() <= 1e-5
