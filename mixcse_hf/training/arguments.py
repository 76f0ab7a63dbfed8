"""Command-line / config arguments: model, data, and ``TrainingArguments`` extended with the MixCSE knobs."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments, integrations

from mixcse_hf.errors import UsageError
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.losses.mixing import check_choice
from mixcse_hf.models.encoder import check_pooler_type
from mixcse_hf.models.pooling import POOLERS
from mixcse_hf.training.identity import CHANGEABLE

MASK_VALUES = {"zero": 0.0, "neg_inf": -math.inf}


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Encoder to start from: a local HF model directory or a Hub id (required)."},
    )
    reinit_mlp: bool = field(
        default=True,
        metadata={
            "help": "With pooler_type cls: re-initialise the MLP (the encoder's pooler dense layer) randomly, as "
            "the reference creates a fresh one. Set false to keep the checkpoint's pooler weights, e.g. when "
            "continuing from a mixcse_hf checkpoint."
        },
    )

    use_lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (PEFT) instead of all weights; the pooling MLP is trained in full."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt; default per architecture (BERT/RoBERTa: query value; MPNet: q v)."},
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "Save the final model with the adapters merged into the weights (else adapter-only)."},
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise UsageError("model_name_or_path is required: set it in the config or pass --model_name_or_path")


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training data. A text file, one sentence per line (e.g. wiki1m_for_simcse.txt): unsupervised. "
            "A .csv/.tsv/.json/.jsonl/.parquet table (e.g. nli_for_simcse.csv): columns as text_columns says. "
            "Blank lines and rows with a blank field are skipped."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Instead of train_file: a datasets Hub id or local data directory (e.g. "
            "sentence-transformers/all-nli with dataset_config_name triplet)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Config name of dataset_name."})
    dataset_split: str = field(default="train", metadata={"help": "Split of dataset_name to train on."})
    text_column: str = field(
        default="text", metadata={"help": "The single column of one-sentence-per-row data (unsupervised)."}
    )
    text_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "The columns to train on, in order: ANCHOR POSITIVE [HARD_NEGATIVE] (supervised) or one column "
            "(unsupervised). Unset: sent0 sent1 [hard_neg] (SimCSE's NLI file), anchor positive [negative] "
            "(sentence-transformers) or text_column, whichever the data has."
        },
    )
    max_seq_length: int = field(
        default=32, metadata={"help": "Truncate training sentences to this many tokens (the recipe uses 32)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N non-blank sentences only (quick runs, debugging)."}
    )
    senteval_dir: str | None = field(
        default=None,
        metadata={
            "help": "SentEval-layout data directory holding STS/STSBenchmark/sts-{dev,test}.csv for evaluation. "
            "Unset: MTEB's public Hub copy mteb/stsbenchmark-sts (needs network)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenising the corpus (datasets.map num_proc)."}
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 2:
            raise UsageError(
                f"max_seq_length must be >= 2 (room for [CLS] and [SEP]), got {self.max_seq_length}; the recipe uses 32"
            )
        if (self.train_file is None) == (self.dataset_name is None):
            raise UsageError("set exactly one of train_file (a text file) or dataset_name (a datasets dataset)")


INTEGRATION_CHECKS = {"comet_ml": "comet", "azure_ml": "azureml"}
"""``report_to`` names whose ``transformers.integrations.is_<name>_available`` check has another name."""


def check_reporting_integrations(report_to: list[str] | str | None) -> None:
    """Refuse a ``report_to`` integration whose package is missing (the Trainer would stop with a traceback)."""
    for name in [report_to] if isinstance(report_to, str) else report_to or []:
        available = getattr(integrations, f"is_{INTEGRATION_CHECKS.get(name, name)}_available", None)
        if available is not None and not available():
            extra = " (or pip install 'mixcse_hf[tensorboard]')" if name == "tensorboard" else ""
            raise UsageError(
                f"report_to {name} needs the {name} package, which is not installed: pip install {name}{extra}, "
                "or pass --report_to none"
            )


@dataclass
class MixCSETrainingArguments(TrainingArguments):
    temp: float = field(default=0.05, metadata={"help": "Softmax temperature tau of the contrastive loss (> 0)."})
    mix_lambda: float | None = field(
        default=0.2,
        metadata={
            "help": "Weight of the positive in each mixed negative, in (0, 1); 0 or null trains plain SimCSE. "
            "Small values keep the mixed negative farther from the anchor than the positive."
        },
    )
    mixed_negatives: str = field(
        default="reference",
        metadata={
            "help": "reference: the released code's N x 3N logits (both mixed blocks); paired: one mixed negative "
            "per anchor, as the paper describes; none: no mixed negatives of positives (triplets with "
            "mixed_hard_negative only; mix_strategy, mix_sides and mixed_negative_mask then have no effect).",
        },
    )
    mixed_negative_mask: str = field(
        default="zero",
        metadata={
            "help": "Value of the masked self-mix entries: zero (reference; still in the softmax) or neg_inf (-inf).",
        },
    )
    mix_strategy: str = field(
        default="roll",
        metadata={
            "help": "Negative mixed with each positive: roll (next in batch, reference), random, or hardest (most "
            "similar to the anchor, chosen without gradient)."
        },
    )
    lambda_schedule: str = field(
        default="constant",
        metadata={
            "help": "constant (reference); linear or cosine from mix_lambda to mix_lambda_end over training; "
            "adaptive: per pair mix_lambda * (1 - cos(anchor, negative)) / 2."
        },
    )
    mix_lambda_end: float | None = field(
        default=None, metadata={"help": "Final lambda of the linear and cosine schedules, in (0, 1)."}
    )
    mix_sides: str = field(
        default="both",
        metadata={"help": "Mixed-negative blocks: both (reference: anchor and positive sides) or anchor only."},
    )
    hard_negative_weight: float = field(
        default=0.0,
        metadata={
            "help": "Triplets: log-weight added to each anchor's own hard-negative logit, as SimCSE's "
            "hard_negative_weight (0 in its recipe)."
        },
    )
    mixed_hard_negative: bool = field(
        default=False,
        metadata={
            "help": "Triplets: add mixed hard negatives mix_lambda * positive + (1 - mix_lambda) * hard negative "
            "(each positive with its own hard negative, detached: mix_strategy does not apply), one column block."
        },
    )
    log_gradient_signal: bool = field(
        default=True,
        metadata={
            "help": "Log grad_anchor_norm (norm of dLoss/d anchor embeddings) and grad_mixed_share (its share from "
            "the mixed negatives) each logging step; costs two small backward passes through the loss only."
        },
    )
    pooler_type: str = field(
        default="cls",
        metadata={
            "help": "Sentence embedding: "
            + "; ".join(f"{pooler.name}: {pooler.description}" for pooler in POOLERS.values())
            + "."
        },
    )
    mlp_only_train: bool = field(
        default=False,
        metadata={
            "help": "With pooler_type cls: train through the MLP but evaluate and export [CLS] without it "
            "(the unsupervised SimCSE recipe)."
        },
    )
    gradcache_mini_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "GradCache: embed and backpropagate the batch in mini-batches of this many sentences, so memory "
            "grows with it rather than with the batch size (same gradients, about one extra forward pass)."
        },
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={
            "help": "Drop the last incomplete batch: contrastive batches need >= 2 sentences, and across processes "
            "equal sizes for the all-gather of negatives."
        },
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP: every trained parameter is used each step (an unused pooler is frozen)."},
    )
    ddp_broadcast_buffers: bool | None = field(
        default=False, metadata={"help": "DDP: do not broadcast buffers (position ids) every forward."}
    )
    do_train: bool = field(
        default=True,
        metadata={"help": "Train (run_mixcse.py's job; set false with do_eval true to only evaluate a model)."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": "Keep every dataset column: the loss gets each named text column (anchor, positive…), which "
            "the encoder's forward signature does not name."
        },
    )
    resume_changed_settings: list[str] | None = field(
        default=None,
        metadata={
            "help": "Settings allowed to differ from the run being resumed, by name (learning_rate, max_steps, "
            "num_train_epochs, warmup, max_grad_norm, the MixCSE loss options, bf16); each takes effect from the "
            "resumed step on. Any other difference is refused: start a new run for it."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in a non-empty output_dir: the old run's checkpoints are deleted and its "
            "files of the same name replaced."
        },
    )

    def __post_init__(self) -> None:
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise UsageError(
                f"learning_rate must be a positive number (the recipe uses 3e-5), got {self.learning_rate}"
            )
        if self.fp16 and (self.use_cpu or not torch.accelerator.is_available()):
            raise UsageError(
                "fp16 mixed precision needs a GPU and none is in use; on a CPU pass --bf16 true (CPU bf16 autocast) "
                "or --fp16 false"
            )
        if self.bf16 and not self.use_cpu and not torch.accelerator.is_available():
            # The same config trains in bf16 on a GPU and with CPU bf16 autocast (AMX/AVX512-BF16) elsewhere.
            self.use_cpu = True
        super().__post_init__()
        check_reporting_integrations(self.report_to)
        if not self.temp > 0:
            raise UsageError(f"temp must be > 0 (the softmax temperature; the recipe uses 0.05), got {self.temp}")
        if self.mix_lambda and not 0 < self.mix_lambda < 1:
            raise UsageError(
                f"mix_lambda must be in (0, 1) (the recipe uses 0.2), or 0 for plain SimCSE; got {self.mix_lambda}"
            )
        check_pooler_type(self.pooler_type)
        if self.mix_lambda_end is not None and not 0 < self.mix_lambda_end < 1:
            raise UsageError(f"mix_lambda_end must be in (0, 1), got {self.mix_lambda_end}")
        if self.lambda_schedule in ("linear", "cosine") and self.mix_lambda_end is None:
            raise UsageError(f"lambda_schedule {self.lambda_schedule} needs --mix_lambda_end (the final lambda)")
        check_choice("mixed_negative_mask", self.mixed_negative_mask, tuple(MASK_VALUES))
        try:  # the loss refuses the rest (unknown choices, options that mix nothing…) with its own messages
            self.mixcse_loss()
        except ValueError as err:
            raise UsageError(str(err)) from err
        if self.gradcache_mini_batch_size is not None and self.gradcache_mini_batch_size < 1:
            raise UsageError(f"gradcache_mini_batch_size must be >= 1, got {self.gradcache_mini_batch_size}")
        if self.push_to_hub and self.hub_strategy not in ("end", "every_save"):
            raise UsageError(
                f"hub_strategy {str(self.hub_strategy.value)!r} would upload the Trainer's resume state; use end "
                "(publish the final model) or every_save (publish each checkpoint's model)"
            )
        for name in self.resume_changed_settings or []:
            if name not in CHANGEABLE:
                raise UsageError(
                    f"resume_changed_settings: {name!r} cannot change on resume (only {', '.join(CHANGEABLE)}); "
                    "start a new run in a new output_dir or pass --overwrite_output_dir true"
                )
        if self.per_device_train_batch_size < 2:
            raise UsageError(
                "per_device_train_batch_size must be >= 2: the other sentences of the batch are the negatives "
                f"(the recipe uses 64); got {self.per_device_train_batch_size}"
            )

    @property
    def mask_value(self) -> float:
        return MASK_VALUES[self.mixed_negative_mask]

    def mixcse_loss(self) -> MixCSELoss:
        """The :class:`MixCSELoss` these arguments describe (the trainer's default loss): each of its constructor's
        arguments is a field (or, ``mask_value``, a property) of the same name here."""
        return MixCSELoss(**{name: getattr(self, name) for name in inspect.signature(MixCSELoss).parameters})
