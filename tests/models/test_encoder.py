"""Poolers, the two-view forward pass, SentenceEncoder and backbone loading."""

from __future__ import annotations

import pytest
import torch

from mixcse_hf.errors import UsageError
from mixcse_hf.models.encoder import (
    SentenceEncoder,
    embed,
    load_backbone,
    load_encoder,
    load_pretrained,
    pick_device,
    reinit_mlp,
    resolve_model_path,
)
from mixcse_hf.models.pooling import CONFIG_MLP_ONLY_TRAIN_KEY, CONFIG_POOLER_KEY, POOLER_TYPES, inference_pooler
from mixcse_hf.models.sentence_transformers_format import sentence_transformers_pooler
from tests.conftest import BROKEN_MODELS, SENTENCES, minilm_path, tokenized


def test_poolers_match_manual_definitions(tiny: tuple) -> None:
    """Each pooler equals its definition written out by hand; means ignore padding."""
    model, tokenizer = tiny
    features = tokenized(tokenizer, SENTENCES[:4])
    with torch.no_grad():
        out = model(**features, output_hidden_states=True)
        pooled = {name: embed(model, features, name) for name in POOLER_TYPES}
    hidden = out.hidden_states
    for row in range(4):
        length = int(features["attention_mask"][row].sum())
        assert torch.allclose(pooled["cls_before_pooler"][row], hidden[-1][row, 0])
        mlp = torch.tanh(model.pooler.dense(hidden[-1][row, 0]))
        assert torch.allclose(pooled["cls"][row], mlp, atol=1e-6)
        assert torch.allclose(pooled["avg"][row], hidden[-1][row, :length].mean(0), atol=1e-6)
        first_last = ((hidden[0][row, :length] + hidden[-1][row, :length]) / 2).mean(0)
        assert torch.allclose(pooled["avg_first_last"][row], first_last, atol=1e-6)
        top2 = ((hidden[-1][row, :length] + hidden[-2][row, :length]) / 2).mean(0)
        assert torch.allclose(pooled["avg_top2"][row], top2, atol=1e-6)


def test_unknown_pooler_is_value_error(tiny: tuple) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="pooler_type"):
        embed(model, tokenized(tokenizer, SENTENCES[:2]), "max")


def test_encode_restores_input_order_and_mode(tiny: tuple) -> None:
    """Length-sorted batching returns rows in input order, equal to one-by-one encoding; train mode kept."""
    model, tokenizer = tiny
    model.train()
    encoder = SentenceEncoder(model, tokenizer, "avg")
    batched = encoder.encode(SENTENCES, batch_size=5)
    singles = torch.cat([encoder.encode([sentence]) for sentence in SENTENCES])
    assert model.training
    assert batched.shape == (len(SENTENCES), model.config.hidden_size)
    assert torch.allclose(batched, singles, atol=1e-5)


def test_inference_pooler_drops_mlp_only_when_trained_without_it() -> None:
    assert inference_pooler("cls", mlp_only_train=True) == "cls_before_pooler"
    assert inference_pooler("cls", mlp_only_train=False) == "cls"
    assert inference_pooler("avg", mlp_only_train=True) == "avg"


def test_load_backbone_records_pooler_and_encoder_uses_it(tiny_model_dir: str, tmp_path) -> None:
    model, tokenizer = load_backbone(tiny_model_dir, "cls", mlp_only_train=True)
    assert getattr(model.config, CONFIG_POOLER_KEY) == "cls"
    assert getattr(model.config, CONFIG_MLP_ONLY_TRAIN_KEY) is True
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert SentenceEncoder.from_pretrained(str(tmp_path)).pooler_type == "cls_before_pooler"
    assert SentenceEncoder.from_pretrained(tiny_model_dir).pooler_type == "cls_before_pooler"


def test_reinit_mlp_changes_only_the_pooler(tiny_model_dir: str) -> None:
    model, _ = load_backbone(tiny_model_dir, "cls", mlp_only_train=False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    torch.manual_seed(1)
    reinit_mlp(model)
    changed = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert "pooler.dense.weight" in changed
    assert changed <= {"pooler.dense.weight", "pooler.dense.bias"}
    assert torch.count_nonzero(model.pooler.dense.bias) == 0


def test_missing_model_path_is_one_line_usage_error(tmp_path) -> None:
    with pytest.raises(UsageError, match="model_name_or_path") as info:
        load_backbone(str(tmp_path / "no-such-model"), "cls", mlp_only_train=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_a_model_that_cannot_encode_is_one_line_usage_error(case: str, broken_models: dict[str, str]) -> None:
    """No tokenizer files (transformers would build a 5-token tokenizer: every word [UNK]), a tokenizer of another
    vocabulary, an empty directory, an unknown model_type, truncated weights: one line naming the folder."""
    with pytest.raises(UsageError) as info:
        load_pretrained(broken_models[case])
    message = str(info.value)
    assert "\n" not in message
    assert repr(broken_models[case]) in message
    assert BROKEN_MODELS[case] in message


def test_hub_id_resolves_to_installed_offline_copy() -> None:
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == minilm_path()
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"


@pytest.mark.parametrize(("mode", "pooler"), [("cls", "cls_before_pooler"), ("mean", "avg"), ("max", None)])
def test_sentence_transformers_folders_of_either_pooling_format(
    tiny_model_dir: str, tmp_path, mode: str, pooler: str | None
) -> None:
    """sentence-transformers >= 6 saves ``"pooling_mode": "cls"``; earlier versions one boolean per mode (as
    all-MiniLM-L6-v2's folder). Both give the matching pooler and encode as sentence-transformers does; a mode
    without a matching pooler is a one-line error."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    model = SentenceTransformer(modules=[Transformer(tiny_model_dir), Pooling(32, mode)], device="cpu").eval()
    model.save(str(tmp_path))
    assert sentence_transformers_pooler(minilm_path()) == "avg"
    if pooler is None:
        with pytest.raises(UsageError, match=r"unsupported sentence-transformers pooling \['max'\]"):
            sentence_transformers_pooler(str(tmp_path))
        return
    assert sentence_transformers_pooler(str(tmp_path)) == pooler
    expected = model.encode(SENTENCES[:3], convert_to_tensor=True)
    torch.testing.assert_close(SentenceEncoder.from_pretrained(str(tmp_path)).encode(SENTENCES[:3]), expected)


def test_progress_bar_is_labelled_and_off_outside_a_terminal(tiny_model_dir: str, capsys) -> None:
    encoder = SentenceEncoder.from_pretrained(tiny_model_dir, "avg")
    capsys.readouterr()
    encoder.encode(SENTENCES, batch_size=2)  # stderr is captured, not a terminal: no bar
    assert capsys.readouterr().err == ""
    encoder.encode(SENTENCES, batch_size=2, show_progress_bar=True, desc="start model, STS-B dev (avg)")
    assert "start model, STS-B dev (avg): 100%" in capsys.readouterr().err


def test_load_encoder_as_the_command_line_tools_load_it(tiny_model_dir: str) -> None:
    """One loader for mixcse-encode and mixcse-eval: a sentence-transformers folder's max_seq_length unless one is
    given, the dtype and device asked for, and bad options refused before the model loads."""
    encoder = load_encoder(minilm_path())
    assert (encoder.pooler_type, encoder.max_seq_length, encoder.padding_free) == ("avg", 256, False)
    encoder = load_encoder(tiny_model_dir, "avg", "bfloat16", "cpu", max_seq_length=16, padding_free=True)
    assert (encoder.max_seq_length, encoder.padding_free) == (16, True)
    assert next(encoder.model.parameters()).dtype == torch.bfloat16
    assert load_encoder(tiny_model_dir).max_seq_length is None  # no sentence-transformers files: the tokenizer's
    with pytest.raises(UsageError, match="pooler_type must be one of"):
        load_encoder("no-such-model", "nonsense")
    with pytest.raises(UsageError, match="--device 'nonsense' is not a torch device"):
        load_encoder("no-such-model", device="nonsense")
    assert pick_device("cpu") == torch.device("cpu")
