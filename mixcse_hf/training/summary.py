"""What a run reports: STS-B Spearman of the start and the trained model per pooler, the training speed and
memory, as the table printed at the end and the results file the run keeps."""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass, field
from typing import Any

from mixcse_hf.models.pooling import get_pooler, inference_pooler
from mixcse_hf.training.training_args import MixCSETrainingArguments


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
    pooler: str = ""
    """The evaluation pooler: its dev score is the metric the Trainer logs as ``eval_stsb_spearman``."""

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

    def start_metrics(self) -> dict[str, float]:
        """The start model's value of the metric the Trainer logs as ``eval_stsb_spearman`` (dev, evaluation
        pooler), named as the Trainer names it without ``eval_``: step 0 of the training curves."""
        start_dev = self.spearman.get(self.pooler, {}).get("start", {}).get("dev")
        return {"stsb_spearman": start_dev} if start_dev is not None else {}

    def results(self) -> dict[str, Any]:
        """What the run's results file holds (:meth:`from_results` reads it back)."""
        return {
            "pooler": self.pooler,
            "stsb_spearman": self.spearman,
            "train": self.train_metrics,
            "whole_run": self.whole_run,
            "sentences_per_row": self.sentences_per_row,
            "peak_rss_mb": self.peak_rss_mb,
        }

    @classmethod
    def from_results(cls, output_dir: str, results: dict[str, Any], note: str = "") -> RunSummary:
        return cls(
            output_dir,
            note=note,
            pooler=results.get("pooler", ""),
            spearman=results.get("stsb_spearman", {}),
            train_metrics=results.get("train", {}),
            whole_run=results.get("whole_run", {}),
            sentences_per_row=results.get("sentences_per_row", 1),
            peak_rss_mb=results.get("peak_rss_mb", 0.0),
        )

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


def whole_run_metrics(
    global_step: int,
    training_args: MixCSETrainingArguments,
    part: dict[str, float],
    seconds_before: float,
    resumed_at: int,
) -> dict[str, float]:
    """The whole run's training time and rows per second: the time up to the resumed checkpoint plus this part's."""
    seconds = seconds_before + part["train_runtime"]
    return {
        "resumed_at_step": resumed_at,
        "train_runtime": round(seconds, 3),
        "train_samples_per_second": round(global_step * training_args.global_batch_size / seconds, 3),
    }


def peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
