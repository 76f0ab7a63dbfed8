"""Command-line / config arguments: model, data, and ``TrainingArguments`` extended with the MixCSE knobs."""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass

import torch
from transformers import TrainingArguments, integrations

from mixcse_hf.errors import UsageError
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.losses.mixing import check_choice
from mixcse_hf.models.dropout import parse_train_dropout
from mixcse_hf.models.encoder import AUTO_POOLER, check_pooler_type
from mixcse_hf.models.prompts import check_prompt_pooling
from mixcse_hf.training.arguments import DataArguments, MixCSEOptions
from mixcse_hf.training.identity import CHANGEABLE, CHANGEABLE_ALIASES, resumed_settings
from mixcse_hf.training.precision import precision_of_flags, resolve_precision

MASK_VALUES = {"zero": 0.0, "neg_inf": -math.inf}


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


PADDING_FREE_CHOICES = ("auto", "true", "false")


def check_padding_free(args: MixCSEOptions) -> None:
    """``padding_free`` is auto, true or false (auto: off under FSDP, which packing cannot run in: it runs the MLP
    outside the sharded forward); ``pack_length`` needs packing."""
    args.padding_free = str(args.padding_free).lower()
    check_choice("padding_free", args.padding_free, PADDING_FREE_CHOICES)
    if args.fsdp and args.padding_free == "true":
        raise UsageError(
            "padding_free is not supported with FSDP; use DDP (multi_gpu_ddp_bf16.yaml) or pass --padding_free false"
        )
    if args.fsdp:
        args.padding_free = "false"
    if args.pack_length is not None and args.padding_free == "false":
        raise UsageError("pack_length applies to padding_free training; pass --padding_free true or unset pack_length")
    if args.pack_length is not None and args.pack_length < 2:
        raise UsageError(f"pack_length must be >= max_seq_length (and >= 2), got {args.pack_length}")


def check_run_arguments(data_args: DataArguments, training_args: MixCSETrainingArguments) -> None:
    """The checks across argument groups (each group checks its own fields when it is built)."""
    if not training_args.do_train and not training_args.do_eval:
        raise UsageError("nothing to do: do_train and do_eval are both false; set do_train true to train")
    if training_args.pack_length is not None and training_args.pack_length < data_args.max_seq_length:
        raise UsageError(
            f"pack_length {training_args.pack_length} is shorter than max_seq_length {data_args.max_seq_length}: "
            f"a sentence would not fit in a row; pass --pack_length {2 * data_args.max_seq_length} or unset it"
        )
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise UsageError(
            "streaming data has no length, so num_train_epochs cannot end the run: pass --max_steps N (optimizer "
            "steps; epochs of the corpus follow each other until then)"
        )


@dataclass
class MixCSETrainingArguments(MixCSEOptions, TrainingArguments):
    def __post_init__(self) -> None:
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise UsageError(
                f"learning_rate must be a positive number (the recipe uses 3e-5), got {self.learning_rate}"
            )
        self.apply_evaluation_switch()
        self.choose_precision()
        if self.device_type == "cpu":
            self.dataloader_pin_memory = False  # pinning needs an accelerator; asked for on a CPU it only warns
        super().__post_init__()
        self.move_hub_token_to_environment()
        check_reporting_integrations(self.report_to)
        check_pooler_type(self.pooler_type, allow_auto=True)
        self.train_dropout = parse_train_dropout(self.train_dropout)
        if self.pooler_type != AUTO_POOLER:  # else checked once auto has chosen (training.build.build_model)
            check_prompt_pooling(self.pooler_type, self.mlp_only_train, self.prompts, self.include_prompt)
        check_choice("mixed_negative_mask", self.mixed_negative_mask, tuple(MASK_VALUES))
        try:  # the loss checks its own options (ranges, choices, options that mix nothing…)
            self.mixcse_loss()
        except ValueError as err:
            raise UsageError(str(err)) from err
        if self.gradcache_mini_batch_size is not None and self.gradcache_mini_batch_size < 1:
            raise UsageError(f"gradcache_mini_batch_size must be >= 1, got {self.gradcache_mini_batch_size}")
        check_padding_free(self)
        if self.push_to_hub and self.hub_strategy not in ("end", "every_save"):
            raise UsageError(
                f"hub_strategy {str(self.hub_strategy.value)!r} would upload the Trainer's resume state; use end "
                "(publish the final model) or every_save (publish each checkpoint's model)"
            )
        for name in self.resume_changed_settings or []:
            if name not in CHANGEABLE and name not in CHANGEABLE_ALIASES:
                raise UsageError(
                    f"resume_changed_settings: {name!r} cannot change on resume (only {', '.join(CHANGEABLE)}); "
                    "start a new run in a new output_dir or pass --overwrite_output_dir true"
                )
        if self.per_device_train_batch_size < 2:
            raise UsageError(
                "per_device_train_batch_size must be >= 2: the other sentences of the batch are the negatives "
                f"(the recipe uses 64); got {self.per_device_train_batch_size}"
            )

    def move_hub_token_to_environment(self) -> None:
        """The Trainer pickles its arguments into every checkpoint (``training_args.bin``, removed after each save
        but written first): keep the token out of them. ``huggingface_hub`` reads it from ``HF_TOKEN`` instead."""
        if self.hub_token:
            os.environ["HF_TOKEN"] = self.hub_token
            self.hub_token = None

    @property
    def global_batch_size(self) -> int:
        """Rows per optimizer step, over every process and accumulated batch."""
        return self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps

    def apply_evaluation_switch(self) -> None:
        """``do_eval`` decides for all evaluation: false also turns off evaluating during training (and so keeping
        the best model), which the Trainer would otherwise switch back on; unset, the Trainer's rule."""
        if self.do_eval is False:
            self.eval_strategy, self.load_best_model_at_end = "no", False
        elif self.do_eval is None:
            self.do_eval = self.eval_strategy != "no"

    @property
    def device_type(self) -> str:
        """The kind of device training runs on, known before the Trainer sets the device up."""
        if self.use_cpu or not torch.accelerator.is_available():
            return "cpu"
        return torch.accelerator.current_accelerator().type

    def choose_precision(self) -> None:
        """Resolve ``precision`` (and the Trainer's ``bf16``/``fp16`` flags) into the effective precision:
        ``precision`` then holds it, the flags match it, and ``precision_choice`` says why."""
        recorded = resumed_settings(self.output_dir, self.resume_from_checkpoint, self.overwrite_output_dir)
        choice = resolve_precision(
            self.precision,
            self.bf16,
            self.fp16,
            self.device_type,
            precision_of_flags(recorded.get("bf16"), recorded.get("fp16")) if recorded else None,
            os.environ.get("ACCELERATE_MIXED_PRECISION"),
        )
        if choice.fp16 and self.device_type == "cpu":
            raise UsageError(
                "fp16 mixed precision needs a GPU and none is in use; on a CPU pass --precision auto (bf16 where the "
                "CPU has it natively, else float32)"
            )
        self.precision, self.bf16, self.fp16 = choice.name, choice.bf16, choice.fp16
        self.precision_choice = choice
        if choice.bf16 and self.device_type == "cpu":
            self.use_cpu = True  # the Trainer refuses bf16 without a GPU unless told the CPU is meant

    @property
    def mask_value(self) -> float:
        return MASK_VALUES[self.mixed_negative_mask]

    def mixcse_loss(self) -> MixCSELoss:
        """The :class:`MixCSELoss` these arguments describe (the trainer's default loss): each of its constructor's
        arguments is a field (or, ``mask_value``, a property) of the same name here."""
        return MixCSELoss(**{name: getattr(self, name) for name in inspect.signature(MixCSELoss).parameters})
