"""MixCSE inside sentence-transformers: the same loss and gradients as MixCSETrainer's compute_loss, GradCache,
MatryoshkaLoss, SentenceTransformerTrainer, and the loss contract's config and citation."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoModel, AutoTokenizer

from mixcse_hf.losses.mixcse import MixCSELoss as CoreLoss
from mixcse_hf.losses.sentence_transformers import CachedMixCSELoss, MixCSELoss
from mixcse_hf.training.trainer import MixCSETrainer
from mixcse_hf.training.training_args import MixCSETrainingArguments
from tests.conftest import SENTENCES, assert_same_grads, free_port, padded_columns, parameter_grads

TOLERANCE = 1e-8
TRIPLET_OPTIONS = {"mix_lambda": 0.3, "mixed_hard_negative": True, "hard_negative_weight": 0.5}
COLUMNS = {"anchor": SENTENCES, "positive": SENTENCES[1:] + SENTENCES[:1], "negative": SENTENCES[::-1]}


def _st_model(model_dir: str, dropout: float = 0.1) -> SentenceTransformer:
    transformer = Transformer(
        model_dir, config_kwargs={"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    )
    return SentenceTransformer(modules=[transformer, Pooling(32, "cls")], device="cpu").double().train()


def _hf_model(model_dir: str, dropout: float = 0.1) -> torch.nn.Module:
    model = AutoModel.from_pretrained(model_dir, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return model.double().train()


def _features(tokenizer: AutoTokenizer, sentences: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(sentences, padding=True, return_tensors="pt"))


def _trainer_loss(model_dir: str, tmp_path: Path, inputs: dict, **options: object) -> tuple[float, dict]:
    """MixCSETrainer.compute_loss on the HF model (pooler cls_before_pooler = sentence-transformers' CLS)."""
    model = _hf_model(model_dir)
    args = MixCSETrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        pooler_type="cls_before_pooler",
        report_to="none",
        mask_duplicates=False,  # sentence-transformers' batches carry no text hashes
        padding_free="false",  # sentence-transformers embeds padded batches: the same dropout masks
        **options,
    )
    trainer = MixCSETrainer(model=model, args=args)
    torch.manual_seed(11)
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    return loss.item(), parameter_grads(model)


def _st_loss(model_dir: str, features: list[dict], **options: object) -> tuple[float, dict]:
    model = _st_model(model_dir)
    torch.manual_seed(11)
    loss = MixCSELoss(model, **options)(features, None)
    loss.backward()
    return loss.item(), {name.removeprefix("0.model."): grad for name, grad in parameter_grads(model).items()}


def _assert_same(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert_same_grads(expected, actual, TOLERANCE)


@pytest.mark.smoke
@pytest.mark.parametrize("layout", ["unsupervised", "triplets"])
def test_same_loss_and_gradients_as_the_trainer(tiny_model_dir: str, tmp_path: Path, layout: str) -> None:
    """Same tiny model, batch and seed, dropout on, float64: sentence-transformers' loss equals MixCSETrainer's
    compute_loss to 1e-8 (one forward pass over the same rows on both sides, so the same dropout masks)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    if layout == "unsupervised":
        options: dict = {"mix_lambda": 0.2}
        features = _features(tokenizer, SENTENCES)
        trainer_inputs, st_features = features, [features]
    else:
        options = TRIPLET_OPTIONS
        columns = padded_columns(tokenizer, COLUMNS)
        trainer_inputs, st_features = columns, list(columns.values())
    expected_loss, expected = _trainer_loss(tiny_model_dir, tmp_path, trainer_inputs, **options)
    actual_loss, actual = _st_loss(tiny_model_dir, st_features, **options)
    assert actual_loss == pytest.approx(expected_loss, abs=TOLERANCE)
    _assert_same(expected, actual)


@pytest.mark.parametrize("layout", ["unsupervised", "triplets"])
def test_cached_variant_has_the_plain_gradients(tiny_model_dir: str, layout: str) -> None:
    """Without dropout (the cached variant embeds each column separately, so masks would differ), GradCache in
    mini-batches of 5 gives the plain loss's value and gradients."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    options = TRIPLET_OPTIONS if layout == "triplets" else {}
    features = (
        [_features(tokenizer, SENTENCES)]
        if layout == "unsupervised"
        else [_features(tokenizer, sentences) for sentences in COLUMNS.values()]
    )
    model = _st_model(tiny_model_dir, dropout=0.0)
    plain = MixCSELoss(model, **options)(features, None)
    plain.backward()
    expected = parameter_grads(model)
    cached = CachedMixCSELoss(model, mini_batch_size=5, **options)(features, None)
    cached.backward()
    assert cached.item() == pytest.approx(plain.item(), abs=TOLERANCE)
    _assert_same(expected, parameter_grads(model))


def _train(model: SentenceTransformer, loss: torch.nn.Module, output_dir: Path, steps: int = 8) -> None:
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=6,
        max_steps=steps,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    dataset = datasets.Dataset.from_dict({"text": SENTENCES * 4})
    callbacks = [loss.progress_callback()] if isinstance(loss, MixCSELoss) else None
    SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks).train()


def _loss_per_dimension(model: SentenceTransformer, dims: tuple[int, ...]) -> dict[int, float]:
    """The MixCSE loss of a fixed batch, dropout off (both views the same embedding), on each Matryoshka prefix."""
    model.eval()
    with torch.no_grad():
        embeddings = model.encode(SENTENCES, convert_to_tensor=True)
    model.train()
    core = CoreLoss(mix_lambda=0.2).eval()
    return {dim: core(embeddings[:, :dim], embeddings[:, :dim]).item() for dim in dims}


@pytest.mark.parametrize("cached", [False, True])
def test_matryoshka_trains_every_dimension(
    tiny_model_dir: str, tmp_path: Path, cached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MatryoshkaLoss(model, MixCSE) in SentenceTransformerTrainer: our loss gets every prefix, and each prefix's
    loss on a fixed batch is finite and falls, with the plain and the cached loss."""
    from sentence_transformers.sentence_transformer.losses import matryoshka

    shrunk_to = []
    original_shrink = matryoshka.shrink
    monkeypatch.setattr(matryoshka, "shrink", lambda tensor, dim: shrunk_to.append(dim) or original_shrink(tensor, dim))
    torch.manual_seed(0)
    # Mean pooling: the random tiny BERT's [CLS] is nearly the same vector for every sentence.
    model = SentenceTransformer(modules=[Transformer(tiny_model_dir), Pooling(32, "mean")], device="cpu")
    dims = (32, 16, 8)
    before = _loss_per_dimension(model, dims)
    inner = CachedMixCSELoss(model, mini_batch_size=4) if cached else MixCSELoss(model)
    _train(model, MatryoshkaLoss(model, inner, matryoshka_dims=list(dims)), tmp_path / "out")
    after = _loss_per_dimension(model, dims)
    assert set(shrunk_to) == set(dims)
    for dim in dims:
        assert torch.isfinite(torch.tensor(after[dim]))
        assert after[dim] < 0.8 * before[dim], f"dimension {dim}: {before[dim]:.4f} -> {after[dim]:.4f}"


def test_lambda_schedule_follows_the_trainer_through_the_callback(tiny_model_dir: str, tmp_path: Path) -> None:
    """A schedule without its callback in the trainer is an error (also when the callback was made but not
    passed); with it, lambda follows the steps."""
    model = SentenceTransformer(modules=[Transformer(tiny_model_dir), Pooling(32, "cls")], device="cpu")
    loss = MixCSELoss(model, mix_lambda=0.1, lambda_schedule="linear", mix_lambda_end=0.3)
    features = [_features(AutoTokenizer.from_pretrained(tiny_model_dir), SENTENCES)]
    loss.progress_callback()
    with pytest.raises(ValueError, match=r"callbacks=\[loss.progress_callback\(\)\]"):
        loss(features, None)
    _train(model, loss, tmp_path / "out", steps=4)
    assert loss.loss.progress == pytest.approx(3 / 4)  # set before the last of 4 steps
    assert loss.loss.current_lambda() == pytest.approx(0.1 + 0.2 * 3 / 4)


@pytest.mark.parametrize("cached", [False, True])
def test_a_last_batch_of_one_row_adds_no_loss_and_warns_once(
    tiny_model_dir: str, tmp_path: Path, cached: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """SentenceTransformerTrainer keeps a short last batch (``dataloader_drop_last=False``, its default): 13 rows in
    batches of 6 end each epoch with a batch of 1, which has no negatives. It trains through (the short batch adds
    a zero loss), and one warning names drop_last."""
    model = SentenceTransformer(modules=[Transformer(tiny_model_dir), Pooling(32, "mean")], device="cpu")
    loss = CachedMixCSELoss(model, mini_batch_size=4) if cached else MixCSELoss(model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=6,
        num_train_epochs=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1,
    )
    dataset = datasets.Dataset.from_dict({"text": [*SENTENCES, "a last sentence ."]})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    with caplog.at_level("WARNING", logger="mixcse_hf.losses.sentence_transformers"):
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 6 and len(losses) == 6
    assert losses[2] == losses[5] == 0.0 and all(value > 0 for value in losses[:2] + losses[3:5])
    warnings = [record.getMessage() for record in caplog.records if "no in-batch negatives" in record.getMessage()]
    assert len(warnings) == 1 and "dataloader_drop_last=True" in warnings[0]


@pytest.mark.parametrize("temp", [float("inf"), float("nan"), 0.0])
def test_temperature_is_checked_by_the_core_loss(tiny_model_dir: str, temp: float) -> None:
    """One rule for temp, the core loss's: an infinite temperature makes every logit equal and nothing trains."""
    with pytest.raises(ValueError, match="temp must be a finite number > 0"):
        MixCSELoss(_st_model(tiny_model_dir), temp=temp)


def test_contract_config_citation_and_column_count(tiny_model_dir: str) -> None:
    model = _st_model(tiny_model_dir)
    loss = CachedMixCSELoss(model, mini_batch_size=8, temp=0.07, mix_lambda=0.3)
    config = loss.get_config_dict()
    assert config["temp"] == 0.07 and config["mix_lambda"] == 0.3 and config["mini_batch_size"] == 8
    assert "Mixing Negatives" in loss.citation and loss.citation.startswith("@inproceedings")
    features = _features(AutoTokenizer.from_pretrained(tiny_model_dir), SENTENCES[:4])
    with pytest.raises(ValueError, match="the dataset has 4"):
        MixCSELoss(model)([features] * 4, None)
    with pytest.raises(ValueError, match="log_gradient_signal"):
        MixCSELoss(model, log_gradient_signal=True)


def _gather_worker(rank: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = _st_model(model_dir, dropout=0.0)
    model[0].model.pooler.requires_grad_(False)  # unused by CLS pooling: DDP would wait for its gradient
    model = DistributedDataParallel(model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = slice(rank * 6, (rank + 1) * 6)
    features = list(padded_columns(tokenizer, {c: sentences[rows] for c, sentences in COLUMNS.items()}).values())
    loss = MixCSELoss(model, gather_across_devices=True, **TRIPLET_OPTIONS)(features, None)
    loss.backward()
    grads = {name: p.grad for name, p in model.module.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_gather_across_devices_equals_one_process(tiny_model_dir: str, tmp_path: Path) -> None:
    """Triplets on 2 processes (gloo, DDP), 6 rows each, gather_across_devices: every process's anchors,
    positives and hard negatives join the batch, and the gradients are those of 1 process holding all 12."""
    model = _st_model(tiny_model_dir, dropout=0.0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    features = list(padded_columns(tokenizer, COLUMNS).values())
    loss = MixCSELoss(model, **TRIPLET_OPTIONS)(features, None)
    loss.backward()
    expected = parameter_grads(model)
    mp.spawn(_gather_worker, args=(free_port(), tiny_model_dir, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["loss"].item() == pytest.approx(loss.item(), abs=TOLERANCE)
        _assert_same(expected, result["grads"])
