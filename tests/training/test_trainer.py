"""MixCSETrainer: its loss is MixCSELoss on the two views; evaluation and similarity logging."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding

from mixcse_hf.evaluation.sts import sts_spearman
from mixcse_hf.evaluation.sts_data import load_stsb
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.batch import embed_batch
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training.data import load_corpus, tokenize_corpus
from mixcse_hf.training.trainer import MixCSETrainer
from mixcse_hf.training.training_args import MixCSETrainingArguments


def _trainer(tiny_model_dir: str, corpus: Path, senteval: Path, out: Path, **overrides: object) -> MixCSETrainer:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    values = {
        "output_dir": str(out),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "max_steps": 4,
        "logging_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 3,
        "mix_lambda": 0.2,
        "mask_duplicates": False,  # data of our own: tokenize_corpus and a plain collator add no text hashes
        "padding_free": "false",  # the references below embed padded batches
    }
    values.update(overrides)
    return MixCSETrainer(
        model=AutoModel.from_pretrained(tiny_model_dir),
        args=MixCSETrainingArguments(**values),
        train_dataset=tokenize_corpus(load_corpus(train_file=str(corpus)), tokenizer, 16),
        eval_dataset=load_stsb("dev", str(senteval)).to_dataset(),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )


@pytest.mark.parametrize(("mix_lambda", "pooler"), [(0.2, "cls"), (None, "avg"), (0.3, "avg_first_last")])
def test_compute_loss_is_mixcse_loss_on_two_views(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path, mix_lambda: float | None, pooler: str
) -> None:
    trainer = _trainer(tiny_model_dir, tiny_corpus, tiny_senteval, tmp_path, mix_lambda=mix_lambda, pooler_type=pooler)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.train()
    torch.manual_seed(11)
    loss = trainer.compute_loss(model, batch)
    torch.manual_seed(11)
    z1, z2 = embed_batch(model, {"text": batch}, pooler)
    expected = MixCSELoss(temp=0.05, mix_lambda=mix_lambda)(z1, z2)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert loss.requires_grad


def test_training_logs_similarities_and_dev_spearman(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    trainer = _trainer(tiny_model_dir, tiny_corpus, tiny_senteval, tmp_path)
    trainer.train()
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    eval_logs = [entry for entry in trainer.state.log_history if "eval_stsb_spearman" in entry]
    assert [entry["step"] for entry in train_logs] == [2, 4]
    assert [entry["step"] for entry in eval_logs] == [2, 4]
    assert all(entry["eval_alignment"] >= 0 and entry["eval_uniformity"] <= 0 for entry in eval_logs)
    for entry in train_logs:
        assert entry["grad_anchor_norm"] > 0
        assert 0 < entry["grad_mixed_share"] < 1
        assert -1 <= entry["sim_negative"] <= 1
        assert -1 <= entry["sim_mixed_negative"] <= 1
        assert entry["sim_positive"] > entry["sim_negative"]
    encoder = SentenceEncoder(trainer.model, trainer.processing_class, "cls")
    expected = sts_spearman(encoder, load_stsb("dev", str(tiny_senteval)))
    assert trainer.evaluate()["eval_stsb_spearman"] == pytest.approx(expected, abs=1e-3)


def test_lambda_schedule_follows_training_progress(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    trainer = _trainer(
        tiny_model_dir, tiny_corpus, tiny_senteval, tmp_path, lambda_schedule="linear", mix_lambda_end=0.4
    )
    trainer.train()
    assert trainer.loss.progress == pytest.approx(3 / 4)  # set before the 4th (last) step
    assert trainer.loss.current_lambda() == pytest.approx(0.2 + 0.2 * 3 / 4)


def test_simcse_gradient_signal_has_no_mixed_share(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    trainer = _trainer(tiny_model_dir, tiny_corpus, tiny_senteval, tmp_path, mix_lambda=None, eval_strategy="no")
    trainer.train()
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(entry["grad_mixed_share"] == 0 and entry["grad_anchor_norm"] > 0 for entry in train_logs)


def test_gradient_accumulation_halves_each_micro_batch_loss(
    tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    """The per-batch mean loss is divided by the accumulation steps (no num_items_in_batch rescaling)."""
    trainer = _trainer(tiny_model_dir, tiny_corpus, tiny_senteval, tmp_path, gradient_accumulation_steps=2)
    trainer.current_gradient_accumulation_steps = 2
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    torch.manual_seed(5)
    full = trainer.compute_loss(trainer.model, batch).detach()
    torch.manual_seed(5)
    reported = trainer.training_step(trainer.model, batch, num_items_in_batch=123)
    assert reported.item() == pytest.approx(full.item() / 2, rel=1e-5)


@pytest.mark.skipif(torch.accelerator.is_available(), reason="what a machine without an accelerator does")
def test_no_pinned_memory_without_an_accelerator(tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """A run on a CPU-only machine does not ask the DataLoader for pinned memory, which warns that no accelerator
    is found."""
    import warnings

    from tests.conftest import train_tiny

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_tiny(tiny_model_dir, tiny_corpus, tmp_path / "out")
    assert not [str(w.message) for w in caught if "pin_memory" in str(w.message)]
    assert MixCSETrainingArguments(output_dir=str(tmp_path)).dataloader_pin_memory is False
