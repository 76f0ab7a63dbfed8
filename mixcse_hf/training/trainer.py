"""``MixCSETrainer``: a ``transformers.Trainer`` whose loss is MixCSE and whose evaluation is STS-B dev Spearman."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME

from mixcse_hf.errors import TrainingDiverged
from mixcse_hf.evaluation.sts import alignment_uniformity, encode_pairs, spearman100
from mixcse_hf.evaluation.sts_data import StsPairs
from mixcse_hf.hub.card import ModelCardInfo, write_model_card
from mixcse_hf.hub.export import add_auto_map, export_checkpoint
from mixcse_hf.losses.cached import backward_from_cache, embed_without_graph
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.encoder import SentenceEncoder, embed_two_views
from mixcse_hf.models.lora import backbone_of
from mixcse_hf.models.pooling import inference_pooler
from mixcse_hf.plot import evaluation_points
from mixcse_hf.training.distributed import gather_with_grad
from mixcse_hf.training.resume import last_complete_checkpoint


class MixCSETrainer(Trainer):
    """Trains an ``AutoModel`` encoder with :class:`MixCSELoss` through the Trainer's own loop; the hooks it
    overrides are ``compute_loss``, ``training_step`` (GradCache only), ``evaluate``, ``log``, ``_save``,
    ``_push_from_checkpoint`` and ``create_model_card``.

    ``args`` must be :class:`mixcse_hf.training.arguments.MixCSETrainingArguments`. ``train_dataset`` holds tokenised
    sentences (``input_ids``, ``attention_mask``…), each batch of N sentences becomes 2N rows in one forward
    pass. ``eval_dataset`` holds STS pairs (``sentence1``, ``sentence2``, ``score``); evaluation logs
    ``eval_stsb_spearman`` (x100, cosine), so ``metric_for_best_model: stsb_spearman`` works, plus the
    ``eval_alignment`` and ``eval_uniformity`` of the dev embeddings. Each logging step
    also reports the mean positive, in-batch negative and mixed-negative cosines since the previous log and,
    with ``log_gradient_signal``, the norm of the loss gradient w.r.t. the anchor embeddings and the share of it
    that comes from the mixed negatives (``grad_anchor_norm``, ``grad_mixed_share``).

    Every save (checkpoints and the final model) also writes the files of :mod:`mixcse_hf.hub.export` and, given
    ``card_info``, the model card, so each checkpoint loads three ways and pushes to the Hub complete.
    """

    # MixCSELoss is a per-batch mean; the Trainer divides it by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, card_info: ModelCardInfo | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.card_info = card_info
        self.loss_fn = MixCSELoss(
            temp=self.args.temp,
            mix_lambda=self.args.mix_lambda,
            mask_value=self.args.mask_value,
            mixed_negatives=self.args.mixed_negatives,
            mix_strategy=self.args.mix_strategy,
            lambda_schedule=self.args.lambda_schedule,
            mix_lambda_end=self.args.mix_lambda_end,
            mix_sides=self.args.mix_sides,
        )
        self._stat_sums: dict[str, torch.Tensor] = {}
        self._stat_batches = 0

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z1, z2 = embed_two_views(model, inputs, self.args.pooler_type)
        loss, logits = self.loss_from_embeddings(z1, z2, training=model.training)
        return (loss, {"logits": logits}) if return_outputs else loss

    def loss_from_embeddings(
        self, z1: torch.Tensor, z2: torch.Tensor, training: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixCSE loss over the global batch: in multi-process training the views of every process are gathered
        (differentiably) first, and the mixed negatives are formed after the gather, as in the reference."""
        anchors = gather_with_grad(z1)
        if training:
            self.loss_fn.progress = self.state.global_step / max(self.state.max_steps, 1)
        logits = self.loss_fn.logits(anchors, gather_with_grad(z2))
        loss = self.loss_fn.loss_from_logits(logits)
        if training:
            if not torch.isfinite(loss):
                self._stop_diverged(loss)
            stats = self.loss_fn.similarity_stats(logits)
            if self.args.log_gradient_signal:
                stats.update(self.loss_fn.gradient_signal(logits, anchors))
            self._accumulate_stats(stats)
        return loss, logits

    def training_step(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """The Trainer's step, or with ``gradcache_mini_batch_size`` the three GradCache passes of
        :mod:`mixcse_hf.losses.cached` (context parallelism and SageMaker MP are not supported there)."""
        mini_batch_size = self.args.gradcache_mini_batch_size
        if not mini_batch_size:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            cached = embed_without_graph(model, inputs, self.args.pooler_type, mini_batch_size)
        z1, z2 = cached.z1.detach().requires_grad_(), cached.z2.detach().requires_grad_()
        loss, _ = self.loss_from_embeddings(z1, z2, training=True)
        loss = loss / self.current_gradient_accumulation_steps
        grad_z1, grad_z2 = torch.autograd.grad(loss, [z1, z2])
        backward_from_cache(
            model,
            cached,
            grad_z1,
            grad_z2,
            self.args.pooler_type,
            backward=self.accelerator.backward,
            no_sync=lambda: self.accelerator.no_sync(model),
            autocast=self.compute_loss_context_manager,
        )
        return loss.detach()

    def _stop_diverged(self, loss: torch.Tensor) -> None:
        last = last_complete_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        resume = f"resume with --resume_from_checkpoint {last}" if last else "restart"
        raise TrainingDiverged(
            f"loss is {loss.item()} at step {self.state.global_step + 1}; training stopped and nothing after "
            f"{last or 'the start'} was saved. Lower learning_rate (or use bf16 instead of fp16), then {resume}"
        )

    def _accumulate_stats(self, stats: dict[str, torch.Tensor]) -> None:
        # Summed as tensors: no device sync until the next log.
        for name, value in stats.items():
            self._stat_sums[name] = self._stat_sums.get(name, 0) + value
        self._stat_batches += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._stat_batches:  # averages of the similarity and gradient-signal sums
            for name, total in self._stat_sums.items():
                logs[name] = round(total.item() / self._stat_batches, 4)
            self._stat_sums, self._stat_batches = {}, 0
        super().log(logs, start_time)

    def sentence_encoder(self) -> SentenceEncoder:
        """The model being trained, wrapped for inference with the evaluation pooler."""
        pooler = inference_pooler(self.args.pooler_type, self.args.mlp_only_train)
        return SentenceEncoder(self.model, self.processing_class, pooler)

    def evaluate(
        self,
        eval_dataset: datasets.Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """STS-B dev Spearman (x100, cosine) of the current model, and the alignment and uniformity of its
        embeddings -> ``{"eval_stsb_spearman", "eval_alignment", "eval_uniformity", "eval_runtime"}``."""
        pairs = StsPairs.from_dataset(eval_dataset if eval_dataset is not None else self.eval_dataset)
        start = time.perf_counter()
        first, second = encode_pairs(
            self.sentence_encoder(), pairs, self.args.per_device_eval_batch_size, show_progress_bar=False
        )
        alignment, uniformity = alignment_uniformity(pairs, first, second)
        metrics = {
            f"{metric_key_prefix}_stsb_spearman": round(
                spearman100(pairs.scores, F.cosine_similarity(first, second, dim=-1)), 4
            ),
            f"{metric_key_prefix}_alignment": round(alignment, 4),
            f"{metric_key_prefix}_uniformity": round(uniformity, 4),
            f"{metric_key_prefix}_runtime": round(time.perf_counter() - start, 3),
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def current_card(self) -> ModelCardInfo | None:
        """The card to write now: ``card_info``, with the latest dev Spearman when it has no results yet."""
        if self.card_info is None or self.card_info.stsb_spearman:
            return self.card_info
        evaluations = evaluation_points(self.state.log_history)
        if not evaluations:
            return self.card_info
        return replace(self.card_info, stsb_spearman={"dev": evaluations[-1]["eval_stsb_spearman"]})

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if backbone_of(self.model) is self.model:
            add_auto_map(self.model)
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            # A pickle of the arguments; run_config.yaml records them as text and weights are safetensors.
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(output_dir, TRAINING_ARGS_NAME))
            export_checkpoint(output_dir, self.model, self.current_card())

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # The Trainer copies only weights, config and tokenizer from the checkpoint into output_dir before
        # uploading output_dir: write our files there too.
        if self.args.should_save:
            export_checkpoint(self.args.output_dir, self.model, self.current_card())
        super()._push_from_checkpoint(checkpoint_folder)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Called by ``push_to_hub``: our card instead of the Trainer's generic one."""
        card = self.current_card()
        if card is not None and self.args.should_save:
            write_model_card(self.args.output_dir, card)
