"""``MixCSETrainer``: a ``transformers.Trainer`` that trains a sentence encoder with a pluggable loss (MixCSE by
default) and evaluates it with pluggable evaluators (STS-B dev Spearman by default)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import datasets
import torch
from torch import nn
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerState
from transformers.trainer_utils import TrainOutput, get_last_checkpoint
from transformers.utils.hub import PushInProgress

from mixcse_hf.errors import TrainingDiverged, UsageError
from mixcse_hf.evaluation.evaluators import STSEvaluator
from mixcse_hf.evaluation.sts_data import StsPairs
from mixcse_hf.hub.card import ModelCardInfo
from mixcse_hf.hub.export import add_auto_map, export_checkpoint
from mixcse_hf.hub.push import HUB_ERRORS, hub_problem, push_model_folder, upload_model_folder
from mixcse_hf.losses.base import (
    BatchLoss,
    batch_loss,
    set_training_progress,
    total_loss,
    training_metrics,
    training_progress,
)
from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.models.batch import BatchEmbedder, as_text_batch
from mixcse_hf.models.distributed import gather_tensor, gather_with_grad
from mixcse_hf.models.encoder import AUTO_POOLER, SentenceEncoder, family_pooler
from mixcse_hf.models.families import choose_padding_free
from mixcse_hf.models.lora import backbone_of
from mixcse_hf.models.pooling import CONFIG_POOLER_KEY, inference_pooler
from mixcse_hf.models.prompts import Prompts
from mixcse_hf.training.history import evaluation_metrics, evaluation_points
from mixcse_hf.training.progress import ProgressLines, TrainingTimeEstimate
from mixcse_hf.training.run_dir import (
    UPLOAD_IGNORE_PATTERNS,
    checkpoint_step,
    last_complete_checkpoint,
    read_card_data,
    recorded_run_id,
    remove_training_arguments_pickle,
    trainer_state_path,
    write_card_data,
)
from mixcse_hf.training.streaming import StreamingCorpus

logger = logging.getLogger(__name__)
Evaluator = Callable[[SentenceEncoder], dict[str, float]]
RECIPE_LEARNING_RATE = 3e-5
DROPOUT_VIEWS_TOLERANCE = 1e-6
"""Two views whose cosine is within this of 1 are the same vector (float rounding apart)."""


class MixCSETrainer(Trainer):
    """Trains an ``AutoModel`` encoder through the Trainer's own loop (``training_step`` is not overridden); the
    hooks it overrides are ``compute_loss``, ``evaluate``, ``log``, ``_save``, ``_push_from_checkpoint``,
    ``push_to_hub`` and, for streaming data (resume), ``train`` and ``get_train_dataloader``. After ``train``,
    :meth:`finish_training` and :meth:`save_final_model` finish the run.

    Args:
        args: :class:`mixcse_hf.training.training_args.MixCSETrainingArguments`.
        train_dataset: tokenised rows, either flat (``input_ids``, ``attention_mask``…: one text column, encoded
            twice with dropout) or one tokenised mapping per named column (``anchor``, ``positive``…, with
            :class:`mixcse_hf.training.data.TextColumnsCollator`); see :mod:`mixcse_hf.models.batch`.
        loss: any loss of the contract in :mod:`mixcse_hf.losses.base`; default :class:`MixCSELoss` built from
            ``args``. With ``args.gradcache_mini_batch_size`` it is wrapped in :class:`CachedLoss`.
        evaluator: one evaluator or several (the contract of :mod:`mixcse_hf.evaluation.evaluators`); default an
            :class:`STSEvaluator` on ``eval_dataset`` (STS pairs: ``sentence1``, ``sentence2``, ``score``), which
            logs ``eval_stsb_spearman``, ``eval_alignment`` and ``eval_uniformity``.
        card_info: the model card to write with every save.
        prompts: the prompt of each text column (already in the tokenised data): saved with the model, and left out
            of the pooling unless ``include_prompt``; evaluation encodes with the default prompt.

    Each logging step also reports the loss's ``training_metrics`` averaged since the previous log (for MixCSE
    the positive, in-batch negative and mixed-negative cosines and, with ``log_gradient_signal``, the gradient
    signal ``grad_anchor_norm`` / ``grad_mixed_share``) and, for a loss with named components, each component.
    In multi-process training the loss sees every process's embeddings (gathered differentiably) and, when the
    batch carries them (``mask_duplicates``), their text hashes (gathered in the same order).

    Every save (checkpoints and the final model) also writes, once, the files of :mod:`mixcse_hf.hub.export` and,
    given ``card_info``, the model card and its data, so each saved folder loads three ways and is pushed to the Hub
    as it is.
    """

    # Losses here are per-batch means; the Trainer divides them by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        loss: nn.Module | None = None,
        evaluator: Evaluator | Sequence[Evaluator] | None = None,
        eval_dataset: datasets.Dataset | None = None,
        card_info: ModelCardInfo | None = None,
        prompts: Prompts | None = None,
        **kwargs: Any,
    ) -> None:
        evaluators = [evaluator] if callable(evaluator) else list(evaluator or [])
        # The Trainer refuses eval_strategy without an eval_dataset; evaluators bring their own data.
        super().__init__(
            *args, eval_dataset=eval_dataset if eval_dataset is not None or not evaluators else {}, **kwargs
        )
        if not evaluators and eval_dataset is not None:
            evaluators = [self._sts_evaluator(eval_dataset)]
        self.evaluators: list[Evaluator] = evaluators
        self.card_info = card_info
        self.prompts = prompts or Prompts()
        self._choose_auto_settings()
        self.loss = loss if loss is not None else self.args.mixcse_loss()
        mini_batch_size = self.args.gradcache_mini_batch_size
        if mini_batch_size and not isinstance(self.loss, BatchLoss):
            self.loss = CachedLoss(self.loss, mini_batch_size)
        self.add_callback(TrainingTimeEstimate())
        for default in (ProgressCallback, PrinterCallback):  # the Trainer adds one of them
            if self.pop_callback(default) is not None:
                self.add_callback(ProgressLines(bar=default is ProgressCallback))
        self._stat_sums: dict[str, torch.Tensor] = {}
        self._stat_batches = 0
        self._views_checked = False
        if isinstance(self.train_dataset, StreamingCorpus):
            self._shard_stream_by_process()

    def _shard_stream_by_process(self) -> None:
        """Each process reads the stream and keeps its rows of each global batch (accelerate's
        ``IterableDatasetShard``); the default for iterable data, batches read on process 0 and sent to the others,
        would make process 0 read and tokenise for all."""
        config = self.accelerator.dataloader_config
        if config.dispatch_batches:
            raise UsageError(
                "accelerator_config dispatch_batches true does not apply to streaming data (each process reads its "
                "own rows); unset it"
            )
        config.dispatch_batches = False

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> TrainOutput:
        """``Trainer.train``. Resuming from a checkpoint at ``max_steps`` (a run stopped during its final save)
        trains nothing: the Trainer would take one step before checking the step count. Resuming on a
        :class:`StreamingCorpus`, the stream itself starts at the checkpoint's batch (rows read again, not
        tokenised) instead of the Trainer drawing and dropping the batches before it."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if checkpoint and 0 < self.args.max_steps <= checkpoint_step(checkpoint):
            return self._restore_finished_run(checkpoint)
        if not isinstance(self.train_dataset, StreamingCorpus):
            return super().train(resume_from_checkpoint, **kwargs)
        done = 0
        if checkpoint and not self.args.ignore_data_skip:
            done = checkpoint_step(checkpoint) * self.args.gradient_accumulation_steps
        self.train_dataset.start_batch = done
        skip_setting, self.args.ignore_data_skip = self.args.ignore_data_skip, True
        try:
            return super().train(resume_from_checkpoint, **kwargs)
        finally:
            self.args.ignore_data_skip = skip_setting

    def _restore_finished_run(self, checkpoint: str) -> TrainOutput:
        """The model and Trainer state as ``train`` would leave them after the checkpoint's last step, without a
        step: the checkpoint's weights and state, then the best model when one is kept. (The Trainer's own resume
        loads them through the same private methods.)"""
        logger.info("%s is at max_steps %d: nothing to train", checkpoint, self.args.max_steps)
        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(trainer_state_path(checkpoint))
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint:
            self._load_best_model()
        return TrainOutput(self.state.global_step, 0.0, {})

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        loader = super().get_train_dataloader()
        if isinstance(self.train_dataset, StreamingCorpus):
            # Starting an epoch draws the workers' base seed from the loader's generator, by default the global RNG
            # that a resume has just restored for the dropout masks; a stream needs no random worker seed.
            base = getattr(loader, "base_dataloader", loader)  # accelerate's DataLoaderShard wraps a DataLoader
            base.generator = torch.Generator().manual_seed(self.args.seed)
        return loader

    def _choose_auto_settings(self) -> None:
        """``pooler_type`` and ``padding_free`` still ``auto`` (a trainer built by hand, not by ``run_mixcse.py``)
        take the model's: the pooler its config records, else its family's; packing where the family packs."""
        backbone = backbone_of(self.model)
        if self.args.pooler_type == AUTO_POOLER:
            self.args.pooler_type = getattr(backbone.config, CONFIG_POOLER_KEY, None) or family_pooler(backbone)
        if self.args.padding_free == "auto":
            self.args.padding_free = str(choose_padding_free("auto", backbone.config, None)).lower()

    def _sts_evaluator(self, eval_dataset: datasets.Dataset) -> STSEvaluator:
        return STSEvaluator(StsPairs.from_dataset(eval_dataset), batch_size=self.args.per_device_eval_batch_size)

    def batch_embedder(self, model: nn.Module) -> BatchEmbedder:
        """How the loss embeds a batch with ``model``: negatives gathered from every process."""
        return BatchEmbedder(
            model,
            self.args.pooler_type,
            gather=gather_with_grad,
            gather_hashes=gather_tensor,
            no_sync=functools.partial(self.accelerator.no_sync, model),
            padding_free=self.args.padding_free == "true",
            pack_length=self.args.pack_length,
            prompt_lengths=self.prompts.lengths(self.processing_class),
        )

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch; in training, stops on a non-finite loss and collects the loss's metrics."""
        training = model.training
        self.loss.train(training)
        if training:
            set_training_progress(self.loss, training_progress(self.state.global_step, self.state.max_steps))
        batch = as_text_batch(inputs)
        embedder = self.batch_embedder(model)
        if training and len(batch) == 1 and not self._views_checked:
            embedder.on_views = self._check_dropout_views
        loss, components = total_loss(batch_loss(self.loss, embedder, batch))
        if training:
            if not torch.isfinite(loss):
                self._stop_diverged(loss)
            self._accumulate_stats({**training_metrics(self.loss), **components})
        return (loss, components) if return_outputs else loss

    def _check_dropout_views(self, views: list[torch.Tensor]) -> None:
        """The first training step's two views of each sentence must differ (by their dropout masks): identical,
        unsupervised training learns nothing, so it stops."""
        self._views_checked = True
        first, second = (view.detach().float() for view in views)
        if bool((nn.functional.cosine_similarity(first, second) > 1 - DROPOUT_VIEWS_TOLERANCE).all()):
            raise UsageError(
                "the two dropout views of every sentence were identical at the first training step, so unsupervised "
                "training would learn nothing: the model applies no dropout; pass --train_dropout 0.1"
            )

    def _stop_diverged(self, loss: torch.Tensor) -> None:
        last = last_complete_checkpoint(self.args.output_dir, recorded_run_id(self.args.output_dir))
        # A tenth of the rate, and never above the recipe's: a rate far too high diverges at a tenth of it too.
        lower = f"--learning_rate {min(self.args.learning_rate / 10, RECIPE_LEARNING_RATE):g}"
        advice = f"restart with a lower learning rate: {lower} --overwrite_output_dir true"
        if last:
            advice += f" (or resume {last} with {lower} --resume_changed_settings learning_rate)"
        if self.args.fp16:
            advice += "; or train in bf16 instead of fp16"
        raise TrainingDiverged(
            f"loss is {loss.item()} at step {self.state.global_step + 1}; training stopped and nothing after "
            f"{last or 'the start'} was saved. To recover, {advice}"
        )

    def _accumulate_stats(self, stats: dict[str, torch.Tensor]) -> None:
        # Summed as tensors: no device sync until the next log.
        for name, value in stats.items():
            self._stat_sums[name] = self._stat_sums.get(name, 0) + value
        self._stat_batches += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._stat_batches:  # averages of the loss's metrics since the last log
            for name, total in self._stat_sums.items():
                logs[name] = round(total.item() / self._stat_batches, 4)
            self._stat_sums, self._stat_batches = {}, 0
        if not isinstance(self.train_dataset, StreamingCorpus):
            super().log(logs, start_time)
            return
        # The Trainer's epoch of a stream is the share of max_steps done (1 at the end, whatever was read): a
        # stream has no known length, so no epoch is logged.
        epoch, self.state.epoch = self.state.epoch, None
        try:
            super().log(logs, start_time)
        finally:
            self.state.epoch = epoch

    def sentence_encoder(self) -> SentenceEncoder:
        """The model being trained, wrapped for inference with the evaluation pooler."""
        pooler = inference_pooler(self.args.pooler_type, self.args.mlp_only_train)
        encoder = SentenceEncoder(self.model, self.processing_class, pooler)
        encoder.prompt = self.prompts.by_column.get(self.prompts.default_name, "")
        encoder.include_prompt = self.prompts.include_prompt
        return encoder

    def evaluate(
        self,
        eval_dataset: datasets.Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Every evaluator's metrics on the current model, as ``{prefix}_{name}``, plus ``{prefix}_runtime``.
        ``eval_dataset`` (STS pairs) evaluates an :class:`STSEvaluator` on it instead."""
        evaluators = [self._sts_evaluator(eval_dataset)] if eval_dataset is not None else self.evaluators
        if not evaluators:
            raise UsageError("nothing to evaluate: pass evaluator= (or STS pairs as eval_dataset) to MixCSETrainer")
        start = time.perf_counter()
        encoder = self.sentence_encoder()
        metrics: dict[str, float] = {}
        for evaluator in evaluators:
            for name, value in evaluator(encoder).items():
                key = f"{metric_key_prefix}_{name}"
                if key in metrics:
                    raise UsageError(f"two evaluators return the metric {name!r}; give them distinct names")
                metrics[key] = value
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 3)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def current_card(self) -> ModelCardInfo | None:
        """The card to write now: ``card_info`` with the latest evaluation's metrics and the best-model choice."""
        evaluations = evaluation_points(self.state.log_history)
        if self.card_info is None or not evaluations:
            return self.card_info
        best = None
        if self.args.metric_for_best_model and self.state.best_metric is not None:
            best = {"metric": self.args.metric_for_best_model.removeprefix("eval_"), "value": self.state.best_metric}
        return replace(
            self.card_info,
            metrics=evaluation_metrics(evaluations[-1]),
            metrics_step=evaluations[-1]["step"],
            best_metric=best,
        )

    def finish_training(self, merge_lora: bool = False) -> None:
        """After :meth:`train`: the model as it is evaluated and saved. LoRA adapters merged into the weights when
        ``merge_lora``; the mixed-precision autocast that training put on ``forward`` dropped, so that the final
        evaluation measures the float32 model that is saved."""
        if merge_lora:
            self.model = self.model_wrapped = self.model.merge_and_unload()
        self.model = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)

    def save_final_model(self, stsb_spearman: dict[str, float] | None = None) -> None:
        """Save the final model to ``output_dir`` once, its card carrying the training steps and the final STS-B
        scores (split -> Spearman x100), and the Trainer state beside it."""
        if self.card_info is not None:
            recipe = {**self.card_info.recipe, "training steps": self.state.global_step}
            self.card_info = replace(self.card_info, recipe=recipe, stsb_spearman=stsb_spearman or {})
        self.save_model(self.args.output_dir, _internal_call=True)  # _internal_call: no push yet
        self.save_state()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # A private Trainer hook, but the one every save (checkpoints, save_model, best-model) goes through: each
        # saved folder is exported once, here.
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if backbone_of(self.model) is self.model:
            add_auto_map(self.model)
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            remove_training_arguments_pickle(output_dir)
            card = export_checkpoint(output_dir, self.model, self.current_card(), self.prompts)
            if card is not None:
                write_card_data(output_dir, card)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # The private Trainer hook of hub_strategy every_save. The Trainer's own version copies files into
        # output_dir and uploads all of it, run records and a pickle of the arguments included; upload the
        # checkpoint (a complete model folder, card included) as every push does instead.
        if not self.is_world_process_zero() or self.args.hub_strategy != "every_save":
            return
        if self.push_in_progress is not None and not self.push_in_progress.is_done() and not self.args.hub_always_push:
            return
        job = upload_model_folder(
            checkpoint_folder,
            self.hub_model_id,
            read_card_data(checkpoint_folder),
            UPLOAD_IGNORE_PATTERNS,
            commit_message=f"Training in progress, step {self.state.global_step}",
            revision=self.args.hub_revision,
            run_as_future=True,
        )
        self.push_in_progress = PushInProgress([job])

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """The Trainer creates the Hub repository before training when ``push_to_hub`` is set: a Hub that cannot
        be reached or refuses is a one-line error there, before anything is trained or written."""
        try:
            super().init_hf_repo(token, private)
        except HUB_ERRORS as err:
            raise hub_problem(err, self.args.output_dir, self.args.hub_model_id or self.args.output_dir) from err

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Publish ``output_dir`` as its last save left it (:meth:`save_final_model`; nothing is saved or exported
        again), the way ``mixcse-push`` does: the card rendered for the Hub id, no Trainer state or run records.
        Returns the commit URL on the main process."""
        if not self.is_world_process_zero():
            return None
        self._finish_current_push()
        return push_model_folder(
            self.args.output_dir,
            self.hub_model_id,
            read_card_data(self.args.output_dir),
            UPLOAD_IGNORE_PATTERNS,
            private=bool(self.args.hub_private_repo),
            revision=revision or self.args.hub_revision,
            commit_message=commit_message,
        )
