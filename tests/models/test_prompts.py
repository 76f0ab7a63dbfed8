"""Prompts: saved as sentence-transformers prompts, so that SentenceTransformer.encode(prompt_name=...) and our
encoder give the embeddings training gave, the prompt's tokens pooled or not (include_prompt)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling
from transformers import AutoTokenizer

from mixcse_hf.errors import UsageError
from mixcse_hf.hub.export import export_checkpoint
from mixcse_hf.models.batch import embed_batch, text_hash
from mixcse_hf.models.encoder import SentenceEncoder, embed, load_backbone
from mixcse_hf.models.pooling import exclude_prompt
from mixcse_hf.models.prompts import Prompts, check_prompt_pooling, check_prompt_room, prompt_length
from mixcse_hf.training.data import TextColumnsCollator, load_corpus, tokenize_columns, tokenize_training_data
from mixcse_hf.training.streaming import TokenizingCollator
from tests.conftest import SENTENCES, train_tiny

PROMPT = "query: find the sentence about "


def saved_with_prompts(model_dir: str, directory: Path, prompts: Prompts) -> str:
    """``model_dir`` saved with the ``avg`` pooler and ``prompts``, as training saves a model."""
    model, tokenizer = load_backbone(model_dir, "avg", mlp_only_train=False)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    export_checkpoint(str(directory), model, prompts=prompts)
    return str(directory)


def test_prompt_length_counts_as_sentence_transformers(tiny_model_dir: str) -> None:
    """[CLS] and the prompt's tokens, not its [SEP]: what sentence-transformers' Transformer module measures."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    module = SentenceTransformer(saved_with_prompts(tiny_model_dir, Path(tiny_model_dir) / "st", Prompts()))[0]
    assert prompt_length(tokenizer, PROMPT) == module._get_prompt_length(PROMPT) == 7
    assert prompt_length(tokenizer, "") == 0


@pytest.mark.parametrize("left_padding", [False, True])
def test_exclude_prompt_is_sentence_transformers_mask(left_padding: bool) -> None:
    lengths = torch.tensor([6, 3, 5, 4])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    if left_padding:
        mask = mask.flip(1)
    expected = Pooling._exclude_prompt_from_mask(mask, 2)
    assert torch.equal(exclude_prompt(mask, torch.full((4,), 2)), expected)
    assert torch.equal(exclude_prompt(mask, None), mask)


@pytest.mark.parametrize("include_prompt", [True, False])
def test_sentence_transformers_prompt_name_gives_our_embeddings(
    tiny_model_dir: str, tmp_path: Path, include_prompt: bool
) -> None:
    prompts = Prompts({"anchor": PROMPT}, include_prompt)
    path = saved_with_prompts(tiny_model_dir, tmp_path / "model", prompts)
    expected = SentenceTransformer(path).encode(SENTENCES, prompt_name="anchor", convert_to_tensor=True)
    ours = SentenceEncoder.from_pretrained(path, prompt_name="anchor")
    assert (ours.prompt, ours.include_prompt) == (PROMPT, include_prompt)
    assert torch.allclose(ours.encode(SENTENCES), expected, atol=1e-5)
    without = SentenceEncoder.from_pretrained(path).encode(SENTENCES)  # no default prompt: the plain sentences
    assert torch.allclose(without, SentenceTransformer(path).encode(SENTENCES, convert_to_tensor=True), atol=1e-5)
    assert not torch.allclose(without, expected, atol=1e-3)
    # The training pipeline's forward pass: the prompted column, its prompt tokens left out where asked.
    tokenizer = AutoTokenizer.from_pretrained(path)
    features = dict(tokenizer([PROMPT + s for s in SENTENCES], padding=True, return_tensors="pt"))
    lengths = prompts.lengths(tokenizer)
    assert lengths == (None if include_prompt else {"anchor": 7})
    z1, _ = embed_batch(ours.model.eval(), {"anchor": features, "positive": features}, "avg", prompt_lengths=lengths)
    assert torch.allclose(z1, expected, atol=1e-5)


def test_one_column_prompt_is_the_default_prompt(tiny_model_dir: str, tmp_path: Path) -> None:
    prompts = Prompts.for_columns([PROMPT], ["text"], include_prompt=False)
    assert prompts == Prompts({"text": PROMPT}, False, "text")
    path = saved_with_prompts(tiny_model_dir, tmp_path / "model", prompts)
    settings = json.loads((Path(path) / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert (settings["prompts"], settings["default_prompt_name"]) == ({"text": PROMPT}, "text")
    pooling = json.loads((Path(path) / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["include_prompt"] is False
    expected = SentenceTransformer(path).encode(SENTENCES, convert_to_tensor=True)
    assert torch.allclose(SentenceEncoder.from_pretrained(path).encode(SENTENCES), expected, atol=1e-5)


def test_prompts_option_is_checked() -> None:
    assert Prompts.for_columns(["", PROMPT], ["anchor", "positive"], True).by_column == {"positive": PROMPT}
    assert Prompts.for_columns(None, ["text"], True).default_name is None
    with pytest.raises(UsageError, match=r"prompts has 1 value\(s\) for the 2 text column\(s\)"):
        Prompts.for_columns([PROMPT], ["anchor", "positive"], True)
    with pytest.raises(
        UsageError, match=r"include_prompt false .* pooler_type cls_before_pooler reads the first token"
    ):
        check_prompt_pooling("cls_before_pooler", False, [PROMPT], include_prompt=False)
    with pytest.raises(UsageError, match="pooler_type avg_top2 has no sentence-transformers equivalent"):
        check_prompt_pooling("avg_top2", False, [PROMPT], include_prompt=True)
    check_prompt_pooling("avg_top2", False, [""], include_prompt=True)


def test_unknown_prompt_name_is_refused(tiny_model_dir: str, tmp_path: Path) -> None:
    path = saved_with_prompts(tiny_model_dir, tmp_path / "model", Prompts({"anchor": PROMPT}))
    with pytest.raises(UsageError, match=r"has no prompt named 'query' \(its prompts: anchor\)"):
        SentenceEncoder.from_pretrained(path, prompt_name="query")


def test_duplicate_hashes_are_of_the_texts_without_prompts(tiny_model_dir: str, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = tmp_path / "pairs.csv"
    write_pairs(pairs)
    corpus = load_corpus(train_file=str(pairs))
    rows = tokenize_columns(corpus, tokenizer, ["anchor", "positive"], 32, text_hashes=True, prompts={"anchor": PROMPT})
    assert rows[0]["anchor"]["text_hash"] == rows[0]["positive"]["text_hash"] == text_hash(SENTENCES[0])
    assert rows[0]["anchor"]["input_ids"][:7] == tokenizer(PROMPT)["input_ids"][:-1]
    assert rows[0]["positive"]["input_ids"] == tokenizer(SENTENCES[0])["input_ids"]


def write_pairs(path: Path) -> None:
    """(anchor, positive) rows: each sentence with itself, then with the next one."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anchor", "positive"])
        writer.writerows([(s, s) for s in SENTENCES] + list(itertools.pairwise(SENTENCES)))


def test_pairs_trained_with_an_anchor_prompt_load_in_sentence_transformers(tiny_model_dir: str, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    write_pairs(pairs)
    flags = ("--pooler_type", "avg", "--prompts", PROMPT, "", "--include_prompt", "false")
    out = train_tiny(tiny_model_dir, pairs, tmp_path / "out", *flags)
    settings = json.loads((out / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert (settings["prompts"], settings["default_prompt_name"]) == ({"anchor": PROMPT}, None)
    assert "| `prompts` | anchor: 'query: find the sentence about ' |" in (out / "README.md").read_text(
        encoding="utf-8"
    )
    model = SentenceTransformer(str(out))
    queries = model.encode(SENTENCES, prompt_name="anchor", convert_to_tensor=True)
    ours = SentenceEncoder.from_pretrained(str(out), prompt_name="anchor")
    assert torch.allclose(ours.encode(SENTENCES), queries, atol=1e-5)
    # As the trainer embeds the first 12 rows (each sentence with itself) of the training data.
    rows = tokenize_columns(
        load_corpus(train_file=str(pairs)), ours.tokenizer, ["anchor", "positive"], 32, prompts={"anchor": PROMPT}
    )
    batch = TextColumnsCollator(ours.tokenizer)([rows[i] for i in range(len(SENTENCES))])
    with torch.no_grad():
        anchors, positives = embed_batch(ours.model.eval(), batch, "avg", prompt_lengths={"anchor": 7})
    assert torch.allclose(anchors, queries, atol=1e-5)
    assert torch.allclose(positives, model.encode(SENTENCES, convert_to_tensor=True), atol=1e-5)


def test_encode_command_takes_the_prompt_by_name(tiny_model_dir: str, tmp_path: Path) -> None:
    from mixcse_hf.cli.encode import main

    path = saved_with_prompts(tiny_model_dir, tmp_path / "model", Prompts({"anchor": PROMPT}, include_prompt=False))
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    assert main([path, str(sentences), str(tmp_path / "queries.npy"), "--prompt", "anchor"]) == 0
    assert main([path, str(sentences), str(tmp_path / "plain.npy")]) == 0
    model = SentenceTransformer(path)
    queries = model.encode(SENTENCES, prompt_name="anchor")
    assert np.allclose(np.load(tmp_path / "queries.npy"), queries, atol=1e-5)
    assert np.allclose(np.load(tmp_path / "plain.npy"), model.encode(SENTENCES), atol=1e-5)
    assert main([path, str(sentences), str(tmp_path / "other.npy"), "--prompt", "query"]) == 2


def test_packed_rows_leave_out_the_same_prompt_tokens(tiny: tuple[torch.nn.Module, AutoTokenizer]) -> None:
    model, tokenizer = tiny
    features = dict(tokenizer([PROMPT + s for s in SENTENCES], padding=True, return_tensors="pt"))
    lengths = torch.full((len(SENTENCES),), prompt_length(tokenizer, PROMPT))
    with torch.no_grad():
        padded = embed(model, features, "avg", prompt_lengths=lengths)
        packed = embed(model, features, "avg", padding_free=True, prompt_lengths=lengths)
        pooled_prompt = embed(model, features, "avg")
    assert torch.allclose(packed, padded, atol=1e-5)
    assert not torch.allclose(padded, pooled_prompt, atol=1e-3)


def test_streamed_batches_carry_the_prompts_as_tokenised_data(tiny_model_dir: str, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = tmp_path / "pairs.csv"
    write_pairs(pairs)
    rows = tokenize_columns(
        load_corpus(train_file=str(pairs)),
        tokenizer,
        ["anchor", "positive"],
        32,
        text_hashes=True,
        prompts={"anchor": PROMPT},
    )
    expected = TextColumnsCollator(tokenizer)([rows[i] for i in range(4)])
    raw = [{"anchor": s, "positive": s} for s in SENTENCES[:4]]
    streamed = TokenizingCollator(tokenizer, 32, text_hashes=True, prompts={"anchor": PROMPT})(raw)
    for column in ("anchor", "positive"):
        for name, tensor in expected[column].items():
            assert torch.equal(streamed[column][name], tensor), (column, name)


def test_unsupervised_prompt_is_the_saved_default_prompt(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path
) -> None:
    flags = ("--pooler_type", "avg", "--prompts", PROMPT, "--include_prompt", "false", "--logging_steps", "1")
    out = train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out", *flags)
    settings = json.loads((out / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert (settings["prompts"], settings["default_prompt_name"]) == ({"text": PROMPT}, "text")
    expected = SentenceTransformer(str(out)).encode(SENTENCES, convert_to_tensor=True)  # the default prompt
    ours = SentenceEncoder.from_pretrained(str(out))
    assert (ours.prompt, ours.include_prompt) == (PROMPT, False)
    assert torch.allclose(ours.encode(SENTENCES), expected, atol=1e-5)
    # The one column, encoded twice (both views), is tokenised with the prompt; its hash is of the plain text.
    rows = tokenize_training_data(
        load_corpus(train_file=str(tiny_corpus)), ours.tokenizer, 32, None, True, {"text": PROMPT}
    )
    assert rows[0]["input_ids"] == ours.tokenizer(PROMPT + SENTENCES[0])["input_ids"]
    assert rows[0]["text_hash"] == text_hash(SENTENCES[0])


def test_a_prompt_that_leaves_no_room_for_the_text_is_refused(tiny_model_dir: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = Prompts({"anchor": PROMPT})
    check_prompt_room(tokenizer, prompts, 9)  # [CLS] + 6 prompt tokens, one of text, [SEP]
    with pytest.raises(UsageError, match=r"prompt of column anchor takes 7 of the max_seq_length 8 tokens"):
        check_prompt_room(tokenizer, prompts, 8)
