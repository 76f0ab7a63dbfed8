"""The training job behind ``run_mixcse.py``, step by step (docs/architecture.md shows who owns each step):

1. the arguments are already valid (:mod:`mixcse_hf.training.training_args`); the output directory is checked;
2. the run directory is locked and the run planned: new, resumed, or already complete (:mod:`.resume`);
3. model, data and card are built (:mod:`.build`), and the start model scored (:func:`start_scores`);
4. the run record and resolved config are written (:mod:`.run_dir`), then the trainer trains, finishes and saves
   the final model once (:class:`~mixcse_hf.training.trainer.MixCSETrainer`);
5. the results, the curves and the completed run record are written, and the model is pushed if asked.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict

from transformers import set_seed

from mixcse_hf.errors import Interrupted, UsageError
from mixcse_hf.evaluation.score_cache import cache_dir, cached_scores, fingerprint
from mixcse_hf.evaluation.sts import stsb_scores
from mixcse_hf.evaluation.sts_data import StsPairs, load_stsb
from mixcse_hf.models.dropout import TrainingDropout
from mixcse_hf.models.prompts import Prompts
from mixcse_hf.output_files import check_output_dir
from mixcse_hf.training import run_dir
from mixcse_hf.training.arguments import DataArguments, ModelArguments
from mixcse_hf.training.build import build_model, build_training_data, card_for_run, load_training_corpus
from mixcse_hf.training.callbacks import LearningRateOnResume, RunRecordCallback
from mixcse_hf.training.config import resolved_config
from mixcse_hf.training.data import text_column_count
from mixcse_hf.training.history import evaluation_points
from mixcse_hf.training.identity import KEPT_ON_RESUME, defining_settings
from mixcse_hf.training.interrupt import StopOnInterrupt
from mixcse_hf.training.precision import emulation_warning
from mixcse_hf.training.resume import RunPlan, plan_run
from mixcse_hf.training.run_lock import locked
from mixcse_hf.training.summary import RunSummary, evaluation_poolers, peak_rss_mb, whole_run_metrics
from mixcse_hf.training.trainer import MixCSETrainer
from mixcse_hf.training.training_args import MixCSETrainingArguments
from mixcse_hf.versions import changed_versions, stack_versions

logger = logging.getLogger(__name__)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: MixCSETrainingArguments) -> RunSummary:
    """Every input is checked before anything is written to ``output_dir``; training holds its lock."""
    # Reading .device sets up the process group: world_size and main_process_first are valid only after it.
    logger.info("Device %s, %d process(es)", training_args.device, training_args.world_size)
    log_precision(training_args)
    if not training_args.do_train:
        return evaluate_only(model_args, data_args, training_args)
    output_dir = training_args.output_dir
    check_output_dir(output_dir)
    with locked(output_dir) if training_args.process_index == 0 else contextlib.nullcontext():
        plan = plan_run(
            output_dir,
            training_args.resume_from_checkpoint,
            training_args.overwrite_output_dir,
            defining_settings(model_args, data_args, training_args),
            training_args.resume_changed_settings,
        )
        if plan.complete:
            return completed_summary(output_dir, plan)
        keep_resumed_settings(training_args, plan)
        try:
            return train(model_args, data_args, training_args, plan)
        except Interrupted:
            raise
        except KeyboardInterrupt:
            raise Interrupted(resume_note(output_dir)) from None


def keep_resumed_settings(training_args: MixCSETrainingArguments, plan: RunPlan) -> None:
    """A resumed run left to choose a setting (``pooler_type: auto``) keeps its recorded value."""
    for name in KEPT_ON_RESUME:
        setattr(training_args, name, plan.identity["settings"][name])


def log_precision(training_args: MixCSETrainingArguments) -> None:
    """One line on the precision chosen and why; a warning where it is bf16 that the CPU only emulates."""
    choice = training_args.precision_choice
    logger.info("Precision %s (%s)", choice.name, choice.reason)
    if (warning := emulation_warning(choice, training_args.device_type)) is not None:
        logger.warning(warning)


def load_sts(data_args: DataArguments, training_args: MixCSETrainingArguments) -> dict[str, StsPairs]:
    """STS-B dev and test when evaluating; evaluation is on by default, so a training run that cannot read the Hub
    copy is also told how to go without it."""
    splits = ("dev", "test") if training_args.do_eval else ()
    try:
        return {split: load_stsb(split, data_args.senteval_dir) for split in splits}
    except UsageError as err:
        if data_args.senteval_dir is None and training_args.do_train:
            raise UsageError(f"{err}, or --do_eval false to train without evaluation") from err
        raise


def final_scores(trainer: MixCSETrainer, sts: dict[str, StsPairs], label: str) -> dict[str, dict[str, float]]:
    """pooler -> split -> Spearman x100 of the trainer's model now."""
    poolers = evaluation_poolers(trainer.args)
    return stsb_scores(trainer.sentence_encoder(), sts, poolers, trainer.args.per_device_eval_batch_size, label)


def start_scores(trainer: MixCSETrainer, sts: dict[str, StsPairs], plan: RunPlan) -> dict[str, dict[str, float]]:
    """The start model's scores: those the run recorded at its start when resuming (the weights loaded then are
    not the start model's: the MLP was re-initialised at the start), else from the score cache, keyed by the
    weights, tokenizer, data, poolers and prompt, else measured (and cached)."""
    if plan.resume_from is not None:
        recorded = plan.identity.get("start_scores")
        if not recorded:
            logger.info("Resuming: this run recorded no start-model scores; the summary has no start row")
        return recorded or {}
    poolers = evaluation_poolers(trainer.args)
    encoder = trainer.sentence_encoder()
    key = fingerprint(
        trainer.model,
        trainer.processing_class,
        poolers,
        trainer.args.per_device_eval_batch_size,
        {split: [pairs.sentences1, pairs.sentences2, pairs.scores] for split, pairs in sts.items()},
        *([encoder.prompt, encoder.include_prompt] if encoder.prompt else []),  # the evaluation's prompt, if any
    )

    def measure() -> dict[str, dict[str, float]]:
        pairs = " + ".join(f"{len(split_pairs)} {split}" for split, split_pairs in sts.items())
        logger.info(
            "Scoring the start model on STS-B (%s pairs, pooler %s) before training; --start_evaluation false skips it",
            pairs,
            " and ".join(poolers),
        )
        return final_scores(trainer, sts, "start model")

    scores, from_cache = cached_scores(key, measure, store=trainer.is_world_process_zero())
    if from_cache:
        logger.info("Start model: STS-B scores from the cache (%s)", cache_dir())
    return scores


def evaluate_only(
    model_args: ModelArguments, data_args: DataArguments, training_args: MixCSETrainingArguments
) -> RunSummary:
    """``do_train false``: score the model as it is."""
    set_seed(training_args.seed)
    sts = load_sts(data_args, training_args)
    model, tokenizer = build_model(model_args, training_args, resuming=False)
    trainer = MixCSETrainer(model=model, args=training_args, processing_class=tokenizer)
    summary = RunSummary(
        training_args.output_dir, trainer.is_world_process_zero(), pooler=evaluation_poolers(training_args)[0]
    )
    summary.record_model("model", final_scores(trainer, sts, "model"))
    return summary


def train(
    model_args: ModelArguments, data_args: DataArguments, training_args: MixCSETrainingArguments, plan: RunPlan
) -> RunSummary:
    set_seed(training_args.seed)
    sts = load_sts(data_args, training_args)
    corpus = load_training_corpus(data_args, training_args)
    dropout = TrainingDropout(training_args.train_dropout, needs_views=text_column_count(corpus) == 1)
    prompts = Prompts.for_columns(training_args.prompts, corpus.column_names, training_args.include_prompt)
    model, tokenizer = build_model(
        model_args,
        training_args,
        resuming=plan.resume_from is not None,
        max_seq_length=data_args.max_seq_length,
        dropout=dropout,
    )
    data = build_training_data(data_args, training_args, tokenizer, corpus, prompts)
    stop_on_interrupt = StopOnInterrupt()
    run_record = RunRecordCallback(recorded_training_seconds(plan.resume_from))
    trainer = MixCSETrainer(
        model=model,
        args=training_args,
        train_dataset=data.dataset,
        eval_dataset=sts["dev"].to_dataset() if "dev" in sts else None,
        processing_class=tokenizer,
        data_collator=data.collator,
        card_info=card_for_run(model_args, data_args, training_args, data.text_columns, dropout, prompts),
        prompts=prompts,
        callbacks=[run_record, LearningRateOnResume(), stop_on_interrupt],
    )
    summary = RunSummary(
        training_args.output_dir, trainer.is_world_process_zero(), pooler=evaluation_poolers(training_args)[0]
    )
    if training_args.do_eval and training_args.start_evaluation:
        summary.record_model("start", start_scores(trainer, sts, plan))
    if trainer.is_world_process_zero():
        plan.identity["training_dropout"] = dropout.values
        start_run(
            training_args.output_dir,
            plan,
            training_args,
            summary,
            resolved_config(model_args, data_args, training_args),
        )
    # Several processes must stop at the same step: there, Ctrl-C stops them at once (KeyboardInterrupt).
    single = training_args.world_size == 1
    with stop_on_interrupt.catching_interrupts() if single else contextlib.nullcontext():
        result = trainer.train(resume_from_checkpoint=plan.resume_from)
    if stop_on_interrupt.requested:
        raise Interrupted(f"stopped at step {trainer.state.global_step}; {resume_note(training_args.output_dir)}")
    trainer.finish_training(merge_lora=model_args.use_lora and model_args.merge_lora)
    summary.train_metrics = result.metrics
    summary.sentences_per_row = data.text_columns
    if plan.resume_from is not None and run_record.seconds_before is not None and result.metrics:
        resumed_at = run_dir.checkpoint_step(plan.resume_from)
        summary.whole_run = whole_run_metrics(
            trainer.state.global_step, training_args, result.metrics, run_record.seconds_before, resumed_at
        )
    summary.peak_rss_mb = peak_rss_mb()
    if training_args.do_eval:
        summary.record_model("trained", final_scores(trainer, sts, "trained model"))
    trainer.save_final_model(summary.spearman.get(summary.pooler, {}).get("trained", {}))
    if trainer.is_world_process_zero():
        write_run_outputs(trainer, summary, plan)
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return summary


def start_run(
    output_dir: str, plan: RunPlan, training_args: MixCSETrainingArguments, summary: RunSummary, config: dict
) -> None:
    """Record the run first, then remove what other runs left (their checkpoints; everything when the run replaces
    another): a crash in between leaves files whose run record is not the output directory's, which are never
    resumed and which the next start removes. A fresh run records its start scores there, for its resumed parts."""
    plan.identity["precision"] = training_args.precision
    versions = stack_versions()
    recorded = plan.identity.get("versions") if plan.resume_from is not None else None  # none before 0.2.0
    if recorded and (changed := changed_versions(recorded, versions)):
        logger.warning("Resuming with other package versions than the run's so far: %s", "; ".join(changed))
    plan.identity["versions"] = versions
    if plan.resume_from is None:
        plan.identity["start_scores"] = summary.model_scores("start")
    run_dir.write_run_record(output_dir, plan.identity)
    if plan.replace_other_run:
        run_dir.remove_other_run(output_dir, keep_run_id=plan.identity["run_id"])
    elif plan.clear_other_runs:
        run_dir.remove_other_runs_checkpoints(output_dir, keep_run_id=plan.identity["run_id"])
    if plan.changed:
        logger.warning("Resuming with changed settings: %s", ", ".join(plan.changed))
    run_dir.write_resolved_config(output_dir, config)


def write_run_outputs(trainer: MixCSETrainer, summary: RunSummary, plan: RunPlan) -> None:
    """After the final save: the metrics files, the training-curve plot, the results and the completed record."""
    output_dir = trainer.args.output_dir
    if summary.train_metrics:
        trainer.save_metrics("train", summary.train_metrics)  # train_results.json + all_results.json
    if summary.spearman:
        trainer.save_metrics("eval", summary.flat_metrics())  # eval_results.json
    if evaluation_points(trainer.state.log_history):
        from mixcse_hf.training.curves import plot_training  # matplotlib only where a plot is drawn

        # The mapping trainer_state.json holds.
        plot_training(asdict(trainer.state), run_dir.plot_path(output_dir), summary.start_metrics())
    run_dir.write_results(output_dir, summary.results())
    run_dir.write_run_record(output_dir, {**plan.identity, "completed": True, "global_step": trainer.state.global_step})


def resume_note(output_dir: str) -> str:
    """What an interrupted run left in ``output_dir`` to resume from, and how to go on."""
    last = run_dir.last_complete_checkpoint(output_dir, run_dir.recorded_run_id(output_dir))
    if last is None:
        return "no checkpoint was saved, nothing to resume: the same command starts the run again"
    return f"{last} holds step {run_dir.checkpoint_step(last)}: the same command resumes the run from it"


def completed_summary(output_dir: str, plan: RunPlan) -> RunSummary:
    """A re-run of a finished run: nothing to train; report what the run measured."""
    steps = plan.identity.get("global_step", "?")
    logger.warning("%s holds this run, complete (%s steps): nothing to train", output_dir, steps)
    note = f"run already complete ({steps} steps): nothing trained"
    return RunSummary.from_results(output_dir, run_dir.read_results(output_dir) or {}, note)


def recorded_training_seconds(checkpoint: str | None) -> float | None:
    """The training time of the run up to ``checkpoint`` (0 for a fresh run; None if the checkpoint recorded none)."""
    if checkpoint is None:
        return 0.0
    return (run_dir.read_run_record(checkpoint) or {}).get("train_seconds")
