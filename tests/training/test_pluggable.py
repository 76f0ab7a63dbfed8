"""The trainer takes loss= and evaluator= through the Python API: a toy loss with named components on (anchor,
positive) columns, and a toy evaluator whose metric picks the best model and appears in the card."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from mixcse_hf import MixCSETrainer, MixCSETrainingArguments, SentenceEncoder
from mixcse_hf.hub.card import ModelCardInfo
from mixcse_hf.training.data import TextColumnsCollator, tokenize_columns
from tests.conftest import SENTENCES


class ToyPairLoss(torch.nn.Module):
    """InfoNCE over (anchor, positive) pairs plus a small norm penalty, as two named components."""

    def __init__(self) -> None:
        super().__init__()
        self.progress_seen: list[float] = []

    def set_training_progress(self, progress: float) -> None:
        self.progress_seen.append(progress)

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T / 0.05
        contrastive = F.cross_entropy(logits, torch.arange(len(anchors)))
        return {"contrastive": contrastive, "norm": 1e-3 * anchors.pow(2).sum(dim=1).mean()}


class ToyEvaluator:
    """Mean cosine between each sentence and its reverse-order partner (any number the model determines)."""

    def __init__(self, sentences: list[str]) -> None:
        self.sentences = sentences
        self.calls = 0

    def __call__(self, encoder: SentenceEncoder) -> dict[str, float]:
        self.calls += 1
        embeddings = encoder.encode(self.sentences, batch_size=4)
        return {"toy_cosine": round(F.cosine_similarity(embeddings, embeddings.flip(0)).mean().item(), 6)}


@pytest.mark.parametrize("gradcache", [None, 3])
def test_custom_loss_and_evaluator(tiny_model_dir: str, tmp_path: Path, gradcache: int | None) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    pairs = datasets.Dataset.from_dict({"anchor": SENTENCES, "positive": SENTENCES[1:] + SENTENCES[:1]})
    evaluator, loss = ToyEvaluator(SENTENCES), ToyPairLoss()
    args = MixCSETrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=6,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="toy_cosine",
        greater_is_better=False,
        load_best_model_at_end=True,
        pooler_type="avg",
        gradcache_mini_batch_size=gradcache,
        report_to="none",
        seed=5,
    )
    trainer = MixCSETrainer(
        model=AutoModel.from_pretrained(tiny_model_dir),
        args=args,
        train_dataset=tokenize_columns(pairs, tokenizer, ["anchor", "positive"], max_seq_length=16),
        data_collator=TextColumnsCollator(tokenizer),
        processing_class=tokenizer,
        loss=loss,
        evaluator=evaluator,
        card_info=ModelCardInfo(model_name="toy", base_model="tiny", pooler="avg", recipe={}),
    )
    trainer.train()

    history = trainer.state.log_history
    evaluations = [entry["eval_toy_cosine"] for entry in history if "eval_toy_cosine" in entry]
    assert evaluator.calls == len(evaluations) == 3
    assert trainer.state.best_metric == min(evaluations)
    best_step = 2 * (evaluations.index(min(evaluations)) + 1)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    train_logs = [entry for entry in history if "loss" in entry]
    assert all(
        entry["loss"] == pytest.approx(entry["loss_contrastive"] + entry["loss_norm"], abs=2e-4) for entry in train_logs
    )
    assert loss.progress_seen == [step / 6 for step in range(6)]
    trainer.save_model()
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "| `toy_cosine` |" in card
    assert f"Best model chosen by `toy_cosine` (best value {min(evaluations):.4g})" in card
