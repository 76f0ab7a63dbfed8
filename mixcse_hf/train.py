"""The training job behind ``run_mixcse.py``: check inputs, evaluate the start, train, evaluate, summarise."""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from dataclasses import dataclass, field

from transformers import DataCollatorWithPadding, set_seed
from transformers.trainer_utils import get_last_checkpoint

from mixcse_hf.arguments import DataArguments, MixCSETrainingArguments, ModelArguments
from mixcse_hf.config import RESOLVED_CONFIG_NAME, save_resolved_config
from mixcse_hf.data import load_corpus, tokenize_corpus
from mixcse_hf.errors import UsageError
from mixcse_hf.modeling import load_backbone, reinit_mlp
from mixcse_hf.plot import PLOT_NAME, evaluation_points, plot_training
from mixcse_hf.pooling import inference_pooler
from mixcse_hf.sts import sts_spearman
from mixcse_hf.sts_data import StsPairs, load_stsb
from mixcse_hf.trainer import MixCSETrainer

logger = logging.getLogger(__name__)
RESULTS_NAME = "sts_results.json"


@dataclass
class RunSummary:
    """What a run measured: STS-B Spearman x100 per pooler, model ("start"/"trained") and split."""

    output_dir: str
    spearman: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    train_metrics: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    def record(self, pooler: str, model: str, split: str, value: float) -> None:
        self.spearman.setdefault(pooler, {}).setdefault(model, {})[split] = round(value, 2)

    def table(self) -> str:
        lines = []
        for pooler, models in self.spearman.items():
            lines.append(f"STS-B Spearman x100 (cosine), pooler {pooler}:")
            lines.append(f"  {'model':<8} {'dev':>7} {'test':>7}")
            for model, splits in models.items():
                dev, test = splits.get("dev", float("nan")), splits.get("test", float("nan"))
                lines.append(f"  {model:<8} {dev:>7.2f} {test:>7.2f}")
        if self.train_metrics:
            lines.append(
                f"training: {self.train_metrics.get('train_samples_per_second', 0):.1f} sentences/s, "
                f"{self.train_metrics.get('train_runtime', 0):.0f} s, peak RSS {self.peak_rss_mb:.0f} MB"
            )
        lines.append(f"checkpoint: {os.path.abspath(self.output_dir)}")
        return "\n".join(lines)


def resolve_resume_checkpoint(training_args: MixCSETrainingArguments) -> str | None:
    """Protect an existing ``output_dir``: resume its last checkpoint, or refuse unless told to overwrite."""
    output_dir = training_args.output_dir
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir!r} is a file; choose a directory path")
    if training_args.resume_from_checkpoint is not None:
        if not os.path.isdir(training_args.resume_from_checkpoint):
            raise UsageError(f"resume_from_checkpoint {training_args.resume_from_checkpoint!r} is not a directory")
        return training_args.resume_from_checkpoint
    if not os.path.isdir(output_dir) or not os.listdir(output_dir) or training_args.overwrite_output_dir:
        return None
    if not training_args.do_train:
        return None
    last = get_last_checkpoint(output_dir)
    if last is None:
        raise UsageError(
            f"output_dir {output_dir!r} is not empty and holds no checkpoint to resume; pass "
            "--overwrite_output_dir to train into it anyway, or choose another output_dir"
        )
    logger.info("Resuming from %s (pass --overwrite_output_dir to start afresh)", last)
    return last


def evaluation_poolers(training_args: MixCSETrainingArguments) -> list[str]:
    """The evaluation pooler, plus ``cls_before_pooler`` when that differs: SimCSE/MixCSE check dev with the
    MLP during training but report test numbers without it."""
    pooler = inference_pooler(training_args.pooler_type, training_args.mlp_only_train)
    return [pooler] if pooler != "cls" else ["cls", "cls_before_pooler"]


def evaluate_sts(
    trainer: MixCSETrainer, sts: dict[str, StsPairs], summary: RunSummary, model_label: str, poolers: list[str]
) -> None:
    encoder = trainer.sentence_encoder()
    for pooler in poolers:
        encoder.pooler_type = pooler
        for split, pairs in sts.items():
            value = sts_spearman(encoder, pairs, batch_size=trainer.args.per_device_eval_batch_size)
            summary.record(pooler, model_label, split, value)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: MixCSETrainingArguments) -> RunSummary:
    """Every input is checked before anything is written to ``output_dir``."""
    resume_from = resolve_resume_checkpoint(training_args)
    set_seed(training_args.seed)
    needs_sts = training_args.do_eval or training_args.eval_strategy != "no"
    sts = {split: load_stsb(split, data_args.senteval_dir) for split in ("dev", "test")} if needs_sts else {}
    model, tokenizer = load_backbone(
        model_args.model_name_or_path, training_args.pooler_type, training_args.mlp_only_train
    )
    if training_args.pooler_type == "cls" and model_args.reinit_mlp and resume_from is None:
        reinit_mlp(model)
    train_dataset = None
    if training_args.do_train:
        with training_args.main_process_first(desc="corpus loading and tokenisation"):
            corpus = load_corpus(
                data_args.train_file,
                data_args.dataset_name,
                data_args.dataset_config_name,
                data_args.dataset_split,
                data_args.text_column,
                data_args.max_train_samples,
            )
            train_dataset = tokenize_corpus(
                corpus, tokenizer, data_args.max_seq_length, data_args.preprocessing_num_workers
            )
    trainer = MixCSETrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=sts["dev"].to_dataset() if "dev" in sts else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    summary = RunSummary(training_args.output_dir)
    poolers = evaluation_poolers(training_args)
    if training_args.do_eval:
        evaluate_sts(trainer, sts, summary, "start", poolers)
    if training_args.do_train:
        os.makedirs(training_args.output_dir, exist_ok=True)
        if trainer.is_world_process_zero():
            save_resolved_config(
                os.path.join(training_args.output_dir, RESOLVED_CONFIG_NAME), (model_args, data_args, training_args)
            )
        result = trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_model()
        trainer.save_state()
        summary.train_metrics = result.metrics
        summary.peak_rss_mb = _peak_rss_mb()
    if training_args.do_eval:
        evaluate_sts(trainer, sts, summary, "trained" if training_args.do_train else "model", poolers)
    if trainer.is_world_process_zero() and training_args.do_train:
        if evaluation_points(trainer.state.log_history):
            plot_training(trainer.state.log_history, os.path.join(training_args.output_dir, PLOT_NAME))
        with open(os.path.join(training_args.output_dir, RESULTS_NAME), "w", encoding="utf-8") as handle:
            json.dump(
                {"stsb_spearman": summary.spearman, "train": summary.train_metrics, "peak_rss_mb": summary.peak_rss_mb},
                handle,
                indent=2,
            )
    return summary


def _peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
