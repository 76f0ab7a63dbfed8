"""The training job behind ``run_mixcse.py``: check inputs, evaluate the start, train, evaluate, summarise."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import datasets
from torch import nn
from transformers import PreTrainedTokenizerBase, set_seed

from mixcse_hf.errors import Interrupted, UsageError
from mixcse_hf.evaluation.score_cache import cache_dir, fingerprint, load_scores, save_scores
from mixcse_hf.evaluation.sts import sts_spearman
from mixcse_hf.evaluation.sts_data import StsPairs, load_stsb
from mixcse_hf.hub.card import ModelCardInfo
from mixcse_hf.hub.export import export_checkpoint
from mixcse_hf.models.encoder import load_backbone, public_model_name, reinit_mlp
from mixcse_hf.models.lora import apply_lora
from mixcse_hf.models.packing import packable_backbone
from mixcse_hf.models.pooling import get_pooler, inference_pooler
from mixcse_hf.paths import check_output_dir, read_json, write_json_atomically
from mixcse_hf.training.arguments import MixCSETrainingArguments
from mixcse_hf.training.config import RESOLVED_CONFIG_NAME, save_resolved_config
from mixcse_hf.training.data import load_corpus, text_column_count, tokenize_training_data, training_collator
from mixcse_hf.training.history import RESULTS_NAME, evaluation_points
from mixcse_hf.training.identity import (
    RunIdentityCallback,
    defining_settings,
    output_dir_lock,
    read_identity,
    remove_checkpoints,
    write_identity,
)
from mixcse_hf.training.interrupt import StopOnInterrupt
from mixcse_hf.training.options import DataArguments, ModelArguments
from mixcse_hf.training.precision import emulation_warning
from mixcse_hf.training.resume import RunPlan, checkpoint_step, last_complete_checkpoint, plan_run
from mixcse_hf.training.streaming import StreamingCorpus, TokenizingCollator, row_source
from mixcse_hf.training.trainer import MixCSETrainer

logger = logging.getLogger(__name__)
START_SCORES_NAME = "sts_start.json"
"""The start model's scores, recorded at a run's start for its resumed parts (the weights loaded when resuming
are not the start model's: the MLP was re-initialised at the start)."""


@dataclass
class RunSummary:
    """What a run measured: STS-B Spearman x100 per pooler, model ("start"/"trained") and split."""

    output_dir: str
    main_process: bool = True
    note: str = ""
    spearman: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    train_metrics: dict[str, float] = field(default_factory=dict)
    """The Trainer's metrics of this process's part of the run (all of it unless resumed)."""
    whole_run: dict[str, float] = field(default_factory=dict)
    """Of a resumed run, when its checkpoint recorded the time before: ``resumed_at_step``, and the whole run's
    ``train_runtime`` and ``train_samples_per_second``."""
    sentences_per_row: int = 1
    """Text columns of the training data: a row is one sentence (unsupervised) or a pair or triplet."""
    peak_rss_mb: float = 0.0

    def record(self, pooler: str, model: str, split: str, value: float) -> None:
        self.spearman.setdefault(pooler, {}).setdefault(model, {})[split] = round(value, 2)

    def record_model(self, model: str, scores: dict[str, dict[str, float]]) -> None:
        """Record ``scores`` (pooler -> split -> value) of ``model``: what :meth:`model_scores` returns."""
        for pooler, splits in scores.items():
            for split, value in splits.items():
                self.record(pooler, model, split, value)

    def model_scores(self, model: str) -> dict[str, dict[str, float]]:
        """pooler -> split -> the Spearman x100 recorded for ``model``."""
        return {pooler: models[model] for pooler, models in self.spearman.items() if model in models}

    def flat_metrics(self) -> dict[str, float]:
        """``{model}_{pooler}_stsb_{split}_spearman`` -> value, for ``Trainer.save_metrics``."""
        return {
            f"{model}_{pooler}_stsb_{split}_spearman": value
            for pooler, models in self.spearman.items()
            for model, splits in models.items()
            for split, value in splits.items()
        }

    def table(self) -> str:
        lines = [self.note] if self.note else []
        for pooler, models in self.spearman.items():
            lines.append(f"STS-B Spearman x100 (cosine), pooler {pooler}:")
            lines.append(f"  {'model':<8} {'dev':>7} {'test':>7}")
            for model, splits in models.items():
                dev, test = splits.get("dev", float("nan")), splits.get("test", float("nan"))
                lines.append(f"  {model:<8} {dev:>7.2f} {test:>7.2f}")
        if self.train_metrics:
            line = f"training: {self.speed(self.train_metrics)}"
            if self.whole_run:
                line += (
                    f" this part (resumed at step {self.whole_run['resumed_at_step']:.0f}); whole run: "
                    f"{self.speed(self.whole_run)}"
                )
            lines.append(f"{line}, peak RSS {self.peak_rss_mb:.0f} MB")
        lines.append(f"checkpoint: {os.path.abspath(self.output_dir)}")
        return "\n".join(lines)

    def speed(self, metrics: dict[str, float]) -> str:
        """E.g. ``55.3 sentences/s, 215 s``, or for triplets ``18.4 rows/s (55.3 sentences/s), 215 s``."""
        rows = metrics.get("train_samples_per_second", 0)
        rate = f"{rows:.1f} sentences/s"
        if self.sentences_per_row > 1:
            rate = f"{rows:.1f} rows/s ({rows * self.sentences_per_row:.1f} sentences/s)"
        return f"{rate}, {metrics.get('train_runtime', 0):.0f} s"


def evaluation_poolers(training_args: MixCSETrainingArguments) -> list[str]:
    """The evaluation pooler, plus ``cls_before_pooler`` when that differs: SimCSE/MixCSE check dev with the
    MLP during training but report test numbers without it."""
    pooler = inference_pooler(training_args.pooler_type, training_args.mlp_only_train)
    without_mlp = get_pooler(pooler).without_mlp
    return [pooler, without_mlp] if without_mlp else [pooler]


def evaluate_sts(
    trainer: MixCSETrainer, sts: dict[str, StsPairs], summary: RunSummary, model_label: str, poolers: list[str]
) -> None:
    encoder = trainer.sentence_encoder()
    for pooler in poolers:
        encoder.pooler_type = pooler
        for split, pairs in sts.items():
            desc = f"{model_label} model, STS-B {split} ({pooler})"
            value = sts_spearman(encoder, pairs, batch_size=trainer.args.per_device_eval_batch_size, desc=desc)
            summary.record(pooler, model_label, split, value)
            logger.info("%s: Spearman x100 %.2f", desc, value)


def score_start_model(
    trainer: MixCSETrainer, sts: dict[str, StsPairs], summary: RunSummary, poolers: list[str], plan: RunPlan | None
) -> None:
    """The summary's "start" rows: recorded at the run's start when resuming, else from the score cache (keyed by
    the weights, tokenizer, data and poolers), else measured (and cached)."""
    if plan is not None and plan.resume_from is not None:
        recorded = read_start_scores(trainer.args.output_dir, plan.identity["run_id"])
        if recorded is None:
            logger.info("Resuming: this run recorded no start-model scores; the summary has no start row")
        summary.record_model("start", recorded or {})
        return
    key = fingerprint(
        trainer.model,
        trainer.processing_class,
        poolers,
        trainer.args.per_device_eval_batch_size,
        {split: [pairs.sentences1, pairs.sentences2, pairs.scores] for split, pairs in sts.items()},
    )
    cached = load_scores(key)
    if cached is not None:
        logger.info("Start model: STS-B scores from the cache (%s)", cache_dir())
        summary.record_model("start", cached)
        return
    pairs = " + ".join(f"{len(split_pairs)} {split}" for split, split_pairs in sts.items())
    logger.info(
        "Scoring the start model on STS-B (%s pairs, pooler %s) before training; --start_evaluation false skips it",
        pairs,
        " and ".join(poolers),
    )
    evaluate_sts(trainer, sts, summary, "start", poolers)
    if trainer.is_world_process_zero():
        save_scores(key, summary.model_scores("start"))


def record_start_scores(output_dir: str, plan: RunPlan, summary: RunSummary) -> None:
    """Keep a fresh run's start scores for its resumed parts; a resumed run keeps what its start wrote."""
    if plan.resume_from is not None:
        return
    path = os.path.join(output_dir, START_SCORES_NAME)
    scores = summary.model_scores("start")
    if not scores:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # an overwritten run's
        return
    write_json_atomically(path, {"run_id": plan.identity["run_id"], "spearman": scores}, indent=2)


def read_start_scores(output_dir: str, run_id: str) -> dict[str, dict[str, float]] | None:
    """What :func:`record_start_scores` wrote for run ``run_id``, else None."""
    saved = read_json(os.path.join(output_dir, START_SCORES_NAME)) or {}
    return saved.get("spearman") if saved.get("run_id") == run_id else None


def move_hub_token_to_environment(training_args: MixCSETrainingArguments) -> None:
    """The Trainer pickles its arguments into every checkpoint (``training_args.bin``): keep the token out of
    them. ``huggingface_hub`` reads it from ``HF_TOKEN`` instead."""
    if training_args.hub_token:
        os.environ["HF_TOKEN"] = training_args.hub_token
        training_args.hub_token = None


def build_model(
    model_args: ModelArguments, training_args: MixCSETrainingArguments, resuming: bool
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The encoder (fresh MLP unless resuming or told not to; LoRA-wrapped when asked) and its tokenizer."""
    model, tokenizer = load_backbone(
        model_args.model_name_or_path, training_args.pooler_type, training_args.mlp_only_train
    )
    uses_mlp = get_pooler(training_args.pooler_type).uses_mlp
    if uses_mlp and model_args.reinit_mlp and not resuming:
        reinit_mlp(model)
    if not uses_mlp and getattr(model, "pooler", None) is not None:
        model.pooler.requires_grad_(False)  # unused: frozen, so DDP needs no unused-parameter search
    if training_args.padding_free:
        packable_backbone(model)
    if model_args.use_lora:
        model = apply_lora(
            model,
            model_args.lora_r,
            model_args.lora_alpha,
            model_args.lora_dropout,
            model_args.lora_target_modules,
            train_mlp=uses_mlp,
        )
    return model, tokenizer


def check_one_batch(rows: int, training_args: MixCSETrainingArguments) -> None:
    """Refuse data that yields no training step: batches are full-size (``dataloader_drop_last``), and a
    contrastive batch needs at least 2 rows either way."""
    batch = training_args.per_device_train_batch_size * training_args.world_size
    needed = batch if training_args.dataloader_drop_last else 2 * training_args.world_size
    if rows < needed:
        raise UsageError(
            f"the training data has {rows} row(s), fewer than one batch of {needed}: nothing would be "
            f"trained; add data or lower per_device_train_batch_size (>= 2)"
        )


def check_pack_length(data_args: DataArguments, training_args: MixCSETrainingArguments) -> None:
    """Every sentence (up to ``max_seq_length`` tokens) must fit in a packed row."""
    if training_args.pack_length is not None and training_args.pack_length < data_args.max_seq_length:
        raise UsageError(
            f"pack_length {training_args.pack_length} is shorter than max_seq_length {data_args.max_seq_length}: "
            f"a sentence would not fit in a row; pass --pack_length {2 * data_args.max_seq_length} or unset it"
        )


def check_loss_fits_data(columns: list[str], training_args: MixCSETrainingArguments) -> None:
    """The hard-negative options need triplets: refuse them on other data rather than ignore them."""
    if len(columns) == 3:
        return
    for name in ("hard_negative_weight", "mixed_hard_negative"):
        if getattr(training_args, name):
            raise UsageError(
                f"{name} needs triplets (anchor, positive, hard negative), but the training data has the columns "
                f"{columns}; unset {name} or train on triplets (text_columns ANCHOR POSITIVE NEGATIVE)"
            )


def check_streaming(data_args: DataArguments, training_args: MixCSETrainingArguments) -> None:
    """A stream has no length: the run's length must come from max_steps."""
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise UsageError(
            "streaming data has no length, so num_train_epochs cannot end the run: pass --max_steps N (optimizer "
            "steps; epochs of the corpus follow each other until then)"
        )


def build_streaming_corpus(data_args: DataArguments, training_args: MixCSETrainingArguments) -> StreamingCorpus:
    """The training rows as a :class:`StreamingCorpus`, checked to hold at least one global batch."""
    source = row_source(
        data_args.train_file, data_args.dataset_name, data_args.dataset_config_name, data_args.dataset_split
    )
    corpus = StreamingCorpus(
        source,
        global_batch_size=training_args.per_device_train_batch_size * training_args.world_size,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        text_column=data_args.text_column,
        text_columns=data_args.text_columns,
        max_rows=data_args.max_train_samples,
    )
    check_loss_fits_data(corpus.column_names, training_args)
    if not corpus.has_one_batch():
        raise UsageError(
            f"the training data has fewer usable rows than one batch of {corpus.global_batch_size}: nothing would "
            "be trained; add data or lower per_device_train_batch_size (>= 2)"
        )
    return corpus


def build_train_dataset(
    data_args: DataArguments, training_args: MixCSETrainingArguments, tokenizer: PreTrainedTokenizerBase
) -> datasets.Dataset | StreamingCorpus:
    """The training data: with ``streaming``, raw rows read as training goes (:class:`StreamingCorpus`); else
    tokenised up front, flat features (unsupervised) or one mapping per column (supervised)."""
    if data_args.streaming:
        return build_streaming_corpus(data_args, training_args)
    with training_args.main_process_first(desc="corpus loading and tokenisation"):
        corpus = load_corpus(
            data_args.train_file,
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_args.dataset_split,
            data_args.text_column,
            data_args.max_train_samples,
            data_args.text_columns,
        )
        check_loss_fits_data(corpus.column_names, training_args)
        check_one_batch(len(corpus), training_args)
        return tokenize_training_data(corpus, tokenizer, data_args.max_seq_length, data_args.preprocessing_num_workers)


def build_collator(
    train_dataset: datasets.Dataset | StreamingCorpus | None, tokenizer: PreTrainedTokenizerBase, max_seq_length: int
) -> Callable[[list[dict]], dict]:
    """Batches of :func:`build_train_dataset`'s rows: tokenised here when streamed, else padded."""
    if isinstance(train_dataset, StreamingCorpus):
        return TokenizingCollator(tokenizer, max_seq_length)
    return training_collator(train_dataset, tokenizer)


def write_run_outputs(trainer: MixCSETrainer, summary: RunSummary) -> None:
    """After the final evaluation: the card with its numbers, the training-curve plot and the results JSON."""
    output_dir = trainer.args.output_dir
    trainer.card_info.recipe["training steps"] = trainer.state.global_step
    card_pooler = evaluation_poolers(trainer.args)[0]
    trainer.card_info.stsb_spearman = summary.spearman.get(card_pooler, {}).get("trained", {})
    export_checkpoint(output_dir, trainer.model, trainer.current_card(), for_hub=trainer.args.push_to_hub)
    if summary.train_metrics:
        trainer.save_metrics("train", summary.train_metrics)  # train_results.json + all_results.json
    if summary.spearman:
        trainer.save_metrics("eval", summary.flat_metrics())  # eval_results.json
    # The start model's value of the metric the Trainer logs as eval_stsb_spearman (dev, evaluation pooler).
    start_dev = summary.spearman.get(card_pooler, {}).get("start", {}).get("dev")
    start_metrics = {"stsb_spearman": start_dev} if start_dev is not None else {}
    if evaluation_points(trainer.state.log_history):
        from mixcse_hf.training.curves import PLOT_NAME, plot_training  # matplotlib only where a plot is drawn

        # The mapping trainer_state.json holds.
        plot_training(asdict(trainer.state), os.path.join(output_dir, PLOT_NAME), start_metrics)
    results = {
        "stsb_spearman": summary.spearman,
        "start_metrics": start_metrics,
        "train": summary.train_metrics,
        "whole_run": summary.whole_run,
        "sentences_per_row": summary.sentences_per_row,
        "peak_rss_mb": summary.peak_rss_mb,
    }
    with open(os.path.join(output_dir, RESULTS_NAME), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: MixCSETrainingArguments) -> RunSummary:
    """Every input is checked before anything is written to ``output_dir``; training holds its lock."""
    if not training_args.do_train and not training_args.do_eval:
        raise UsageError("nothing to do: do_train and do_eval are both false; set do_train true to train")
    check_pack_length(data_args, training_args)
    check_streaming(data_args, training_args)
    move_hub_token_to_environment(training_args)
    # Reading .device sets up the process group: world_size and main_process_first are valid only after it.
    logger.info("Device %s, %d process(es)", training_args.device, training_args.world_size)
    log_precision(training_args)
    if not training_args.do_train:
        return train_and_evaluate(model_args, data_args, training_args, None)
    check_output_dir(training_args.output_dir)
    holds_lock = training_args.process_index == 0
    with output_dir_lock(training_args.output_dir) if holds_lock else contextlib.nullcontext():
        plan = plan_run(
            training_args.output_dir,
            training_args.resume_from_checkpoint,
            training_args.overwrite_output_dir,
            defining_settings(model_args, data_args, training_args),
            training_args.resume_changed_settings,
        )
        if plan.complete:
            return completed_summary(training_args.output_dir, plan)
        try:
            return train_and_evaluate(model_args, data_args, training_args, plan)
        except Interrupted:
            raise
        except KeyboardInterrupt:
            raise Interrupted(resume_note(training_args.output_dir)) from None


def resume_note(output_dir: str) -> str:
    """What an interrupted run left in ``output_dir`` to resume from, and how to go on."""
    run_id = (read_identity(output_dir) or {}).get("run_id")
    last = last_complete_checkpoint(output_dir, run_id) if os.path.isdir(output_dir) else None
    if last is None:
        return "no checkpoint was saved, nothing to resume: the same command starts the run again"
    return f"{last} holds step {checkpoint_step(last)}: the same command resumes the run from it"


def log_precision(training_args: MixCSETrainingArguments) -> None:
    """One line on the precision chosen and why; a warning where it is bf16 that the CPU only emulates."""
    choice = training_args.precision_choice
    logger.info("Precision %s (%s)", choice.name, choice.reason)
    if (warning := emulation_warning(choice, training_args.device_type)) is not None:
        logger.warning(warning)


def completed_summary(output_dir: str, plan: RunPlan) -> RunSummary:
    """A re-run of a finished run: nothing to train; report what the run measured."""
    steps = plan.identity.get("global_step", "?")
    logger.warning("%s holds this run, complete (%s steps): nothing to train", output_dir, steps)
    summary = RunSummary(output_dir, note=f"run already complete ({steps} steps): nothing trained")
    results = os.path.join(output_dir, RESULTS_NAME)
    if os.path.isfile(results):
        with open(results, encoding="utf-8") as handle:
            saved = json.load(handle)
        summary.spearman, summary.train_metrics = saved.get("stsb_spearman", {}), saved.get("train", {})
        summary.whole_run, summary.sentences_per_row = saved.get("whole_run", {}), saved.get("sentences_per_row", 1)
        summary.peak_rss_mb = saved.get("peak_rss_mb", 0.0)
    return summary


def start_run(output_dir: str, plan: RunPlan) -> None:
    """Record the run identity first, then clear other runs' checkpoints: a crash in between leaves checkpoints
    that no longer match the identity, so they are never resumed."""
    write_identity(output_dir, plan.identity)
    if plan.clear_other_runs:
        remove_checkpoints(output_dir, keep_run_id=plan.identity["run_id"])
    if plan.changed:
        logger.warning("Resuming with changed settings: %s", ", ".join(plan.changed))


def train_and_evaluate(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixCSETrainingArguments,
    plan: RunPlan | None,
) -> RunSummary:
    set_seed(training_args.seed)
    resume_from = plan.resume_from if plan is not None else None
    splits = ("dev", "test") if training_args.do_eval else ()
    sts = {split: load_stsb(split, data_args.senteval_dir) for split in splits}
    model, tokenizer = build_model(model_args, training_args, resuming=resume_from is not None)
    train_dataset = build_train_dataset(data_args, training_args, tokenizer) if plan is not None else None
    stop_on_interrupt = StopOnInterrupt()
    run_identity = RunIdentityCallback(recorded_training_seconds(resume_from))
    trainer = MixCSETrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=sts["dev"].to_dataset() if "dev" in sts else None,
        processing_class=tokenizer,
        data_collator=build_collator(train_dataset, tokenizer, data_args.max_seq_length),
        card_info=model_card_info(model_args, data_args, training_args, train_dataset),
        callbacks=[run_identity, stop_on_interrupt] if plan is not None else None,
    )
    summary = RunSummary(training_args.output_dir, main_process=trainer.is_world_process_zero())
    poolers = evaluation_poolers(training_args)
    if training_args.do_eval and training_args.start_evaluation:
        score_start_model(trainer, sts, summary, poolers, plan)
    if plan is not None:
        plan.identity["precision"] = training_args.precision
        if trainer.is_world_process_zero():
            start_run(training_args.output_dir, plan)
            save_resolved_config(
                os.path.join(training_args.output_dir, RESOLVED_CONFIG_NAME), (model_args, data_args, training_args)
            )
            record_start_scores(training_args.output_dir, plan, summary)
        # Several processes must stop at the same step: there, Ctrl-C stops them at once (KeyboardInterrupt).
        single = training_args.world_size == 1
        with stop_on_interrupt.catching_interrupts() if single else contextlib.nullcontext():
            result = trainer.train(resume_from_checkpoint=resume_from)
        if stop_on_interrupt.requested:
            raise Interrupted(f"stopped at step {trainer.state.global_step}; {resume_note(training_args.output_dir)}")
        if model_args.use_lora and model_args.merge_lora:
            trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()
        trainer.save_model()
        trainer.save_state()
        summary.train_metrics = result.metrics
        summary.sentences_per_row = text_column_count(train_dataset)
        if resume_from is not None and run_identity.seconds_before is not None:
            summary.whole_run = whole_run_metrics(trainer, result.metrics, run_identity.seconds_before, resume_from)
        summary.peak_rss_mb = _peak_rss_mb()
    if training_args.do_eval:
        if plan is not None:
            # Report the saved float32 model: drop the mixed-precision autocast that training put on forward().
            trainer.model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        evaluate_sts(trainer, sts, summary, "trained" if plan is not None else "model", poolers)
    if plan is not None and trainer.is_world_process_zero():
        write_run_outputs(trainer, summary)
        write_identity(
            training_args.output_dir, {**plan.identity, "completed": True, "global_step": trainer.state.global_step}
        )
    if training_args.push_to_hub and plan is not None:
        trainer.push_to_hub()
    return summary


def recorded_training_seconds(checkpoint: str | None) -> float | None:
    """The training time of the run up to ``checkpoint`` (0 for a fresh run; None if the checkpoint recorded none)."""
    if checkpoint is None:
        return 0.0
    return (read_identity(checkpoint) or {}).get("train_seconds")


def whole_run_metrics(
    trainer: MixCSETrainer, segment: dict[str, float], seconds_before: float, resumed_from: str
) -> dict[str, float]:
    """The whole run's training time and rows per second: the resumed checkpoint's time plus this part's."""
    rows = trainer.state.global_step * global_batch_size(trainer.args)
    seconds = seconds_before + segment["train_runtime"]
    return {
        "resumed_at_step": checkpoint_step(resumed_from),
        "train_runtime": round(seconds, 1),
        "train_samples_per_second": round(rows / seconds, 3),
    }


def global_batch_size(training_args: MixCSETrainingArguments) -> int:
    """Rows per optimizer step, over every process and accumulated batch."""
    return (
        training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps
    )


def training_objective(training_args: MixCSETrainingArguments, text_columns: int) -> str:
    """E.g. "MixCSE, unsupervised (two dropout views…)" or "SimCSE (no mixed negatives), supervised triplets…"."""
    method = "MixCSE" if training_args.mix_lambda else "SimCSE (no mixed negatives)"
    layout = {3: "supervised triplets (anchor, positive, hard negative)", 2: "supervised pairs (anchor, positive)"}
    return f"{method}, {layout.get(text_columns, 'unsupervised (two dropout views of each sentence)')}"


def model_card_info(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: MixCSETrainingArguments,
    train_dataset: datasets.Dataset | StreamingCorpus | None = None,
) -> ModelCardInfo:
    text_columns = text_column_count(train_dataset)
    recipe: dict[str, object] = {
        "objective": training_objective(training_args, text_columns),
        "mix_lambda": training_args.mix_lambda or 0,
        "temp": training_args.temp,
        "mixed_negatives": training_args.mixed_negatives,
        "mixed_negative_mask": training_args.mixed_negative_mask,
        "mix_strategy": training_args.mix_strategy,
        "lambda_schedule": training_args.lambda_schedule
        + (f" to {training_args.mix_lambda_end}" if training_args.mix_lambda_end else ""),
        "mix_sides": training_args.mix_sides,
        "pooler_type (training)": training_args.pooler_type,
        "mlp_only_train": training_args.mlp_only_train,
        "batch size (global)": global_batch_size(training_args),
        "learning_rate": training_args.learning_rate,
        "epochs": training_args.num_train_epochs,
        "max_seq_length": data_args.max_seq_length,
        "train data": os.path.basename(data_args.train_file) if data_args.train_file else data_args.dataset_name,
        "seed": training_args.seed,
        "precision": training_args.precision,
    }
    if data_args.streaming:
        del recipe["epochs"]  # max_steps sets a stream's length; how many epochs it reads is not known
    if text_columns == 3:
        recipe["hard_negative_weight"] = training_args.hard_negative_weight
        recipe["mixed_hard_negative"] = training_args.mixed_hard_negative
    lora = None
    if model_args.use_lora:
        lora = {
            "r": model_args.lora_r,
            "alpha": model_args.lora_alpha,
            "dropout": model_args.lora_dropout,
            "target_modules": model_args.lora_target_modules or "architecture default",
        }
    return ModelCardInfo(
        model_name=training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir)),
        base_model=public_model_name(model_args.model_name_or_path),
        pooler=inference_pooler(training_args.pooler_type, training_args.mlp_only_train),
        recipe=recipe,
        train_data=os.path.basename(data_args.train_file) if data_args.train_file else data_args.dataset_name,
        sts_source="senteval" if data_args.senteval_dir else "hub",
        lora=lora if not model_args.merge_lora else None,
    )


def _peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
