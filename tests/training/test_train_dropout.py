"""Dropout in training: a model shipped without dropout trains unsupervised on views that differ (a training dropout
set at load, kept out of the saved config) or is refused; the trainer stops on identical views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, DataCollatorWithPadding

from mixcse_hf.errors import UsageError
from mixcse_hf.models.dropout import TrainingDropout, dropout_probabilities, parse_train_dropout
from mixcse_hf.training.data import load_corpus, tokenize_corpus
from mixcse_hf.training.run_dir import read_run_record
from mixcse_hf.training.trainer import MixCSETrainer
from mixcse_hf.training.training_args import MixCSETrainingArguments
from tests.conftest import SENTENCES, TINY_SHAPE, minilm_path, train_tiny

BERT_DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
MODERNBERT_DROPOUT_KEYS = ("attention_dropout", "embedding_dropout", "mlp_dropout")


def save_tiny(config: AutoConfig, path: Path) -> str:
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bert_without_dropout(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny BERT of the tests with every dropout probability 0."""
    config = BertConfig(
        vocab_size=30522, max_position_embeddings=128, **TINY_SHAPE, **dict.fromkeys(BERT_DROPOUT_KEYS, 0.0)
    )
    return save_tiny(config, tmp_path_factory.mktemp("bert-no-dropout"))


@pytest.fixture(scope="module")
def tiny_modernbert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random ModernBERT (shipped, as the real ones, with every dropout 0) with the MiniLM tokenizer: its
    special token ids set to that tokenizer's."""
    config = AutoConfig.for_model(
        "modernbert",
        vocab_size=30522,
        max_position_embeddings=128,
        **{"pad_token_id": 0, "cls_token_id": 101, "sep_token_id": 102, "bos_token_id": 101, "eos_token_id": 102},
        **TINY_SHAPE,
    )
    assert not any(dropout_probabilities(config).values())
    return save_tiny(config, tmp_path_factory.mktemp("modernbert"))


def test_dropout_probabilities_are_read_from_any_config() -> None:
    assert dropout_probabilities(BertConfig()) == dict.fromkeys(BERT_DROPOUT_KEYS, 0.1)  # classifier_dropout: a head's
    modernbert = AutoConfig.for_model("modernbert", classifier_dropout=0.3)
    assert dropout_probabilities(modernbert) == dict.fromkeys(MODERNBERT_DROPOUT_KEYS, 0.0)
    assert dropout_probabilities(AutoConfig.for_model("gpt2")) == {
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
    }


@pytest.mark.parametrize(("given", "parsed"), [("auto", "auto"), (" AUTO ", "auto"), (0.1, "0.1"), ("0", "0")])
def test_train_dropout_values(given: str | float, parsed: str) -> None:
    assert parse_train_dropout(given) == parsed


@pytest.mark.parametrize("given", ["none", "1", "-0.1", "0.1x"])
def test_train_dropout_refuses_other_values(given: str) -> None:
    with pytest.raises(UsageError, match=r"train_dropout must be auto or a probability in \[0, 1\)"):
        parse_train_dropout(given)


@pytest.mark.parametrize(
    ("setting", "needs_views", "shipped", "changed"),
    [
        ("auto", True, 0.1, {}),  # BERT as shipped: untouched (the reference run)
        ("auto", True, 0.0, dict.fromkeys(BERT_DROPOUT_KEYS, 0.1)),
        ("auto", False, 0.0, {}),  # pairs: the views are different texts
        ("0.2", False, 0.1, dict.fromkeys(BERT_DROPOUT_KEYS, 0.2)),
        ("0", False, 0.1, dict.fromkeys(BERT_DROPOUT_KEYS, 0.0)),
    ],
)
def test_training_dropout_decision(setting: str, needs_views: bool, shipped: float, changed: dict) -> None:
    dropout = TrainingDropout(setting, needs_views)
    config = BertConfig(**dict.fromkeys(BERT_DROPOUT_KEYS, shipped))
    assert dropout.overrides(config) == changed
    assert dropout.values == {**dict.fromkeys(BERT_DROPOUT_KEYS, shipped), **changed}


def test_unsupervised_without_dropout_is_refused() -> None:
    with pytest.raises(UsageError, match=r"train_dropout 0 makes the two views .* pass --train_dropout auto"):
        TrainingDropout("0", needs_views=True).overrides(BertConfig())
    no_keys = AutoConfig.for_model("mpnet")
    for key in dropout_probabilities(no_keys):
        delattr(no_keys, key)
    with pytest.raises(UsageError, match=r"MPNetConfig names no dropout probability.*train on pairs"):
        TrainingDropout("auto", needs_views=True).overrides(no_keys)


def trained_sim_positive(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    return [entry["sim_positive"] for entry in history if "sim_positive" in entry]


@pytest.mark.parametrize(
    ("model", "keys", "flags"),
    [
        ("bert_without_dropout", BERT_DROPOUT_KEYS, ()),
        ("tiny_modernbert", MODERNBERT_DROPOUT_KEYS, ("--pooler_type", "avg")),
    ],
)
def test_a_model_without_dropout_trains_unsupervised_on_different_views(
    request: pytest.FixtureRequest,
    tiny_corpus: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    model: str,
    keys: tuple[str, ...],
    flags: tuple[str, ...],
) -> None:
    model_dir = request.getfixturevalue(model)
    caplog.set_level("INFO", logger="mixcse_hf.models.dropout")
    out = train_tiny(model_dir, tiny_corpus, tmp_path / "out", "--logging_steps", "1", *flags)
    assert f"{', '.join(keys)} set for training, shipped as" in caplog.text
    sims = trained_sim_positive(out)
    assert len(sims) == 2 and all(sim < 1 - 1e-4 for sim in sims)
    before, after = load_file(f"{model_dir}/model.safetensors"), load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(before[name], after[name]) for name in before)
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert {key: saved[key] for key in keys} == dict.fromkeys(keys, 0.0)
    assert read_run_record(str(out))["training_dropout"] == dict.fromkeys(keys, 0.1)
    assert f"| `dropout (training only)` | {keys[0]} 0.1, " in (out / "README.md").read_text(encoding="utf-8")


def test_explicit_zero_dropout_unsupervised_is_refused_before_training(
    bert_without_dropout: str, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from run_mixcse import main

    out = tmp_path / "out"
    args = ["--model_name_or_path", bert_without_dropout, "--train_file", str(tiny_corpus), "--output_dir", str(out)]
    assert main([*args, "--train_dropout", "0", "--do_eval", "false", "--per_device_train_batch_size", "4"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: train_dropout 0 makes the two views") and "\n" not in error
    assert not out.exists() or not any(out.iterdir())


def test_trainer_stops_when_the_first_views_are_identical(bert_without_dropout: str, tmp_path: Path) -> None:
    """A model whose dropout has no effect (here: none at all, loaded around the training dropout) is caught at
    the first step."""
    tokenizer = AutoTokenizer.from_pretrained(bert_without_dropout)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    args = MixCSETrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, report_to="none"
    )
    trainer = MixCSETrainer(
        model=AutoModel.from_pretrained(bert_without_dropout),
        args=args,
        train_dataset=tokenize_corpus(load_corpus(train_file=str(corpus)), tokenizer, 16),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    with pytest.raises(UsageError, match=r"two dropout views of every sentence were identical .* --train_dropout 0.1"):
        trainer.train()
    assert trainer.state.global_step == 0
