"""LoRA (PEFT) variants: adapters on the attention projections, the pooling MLP trained in full beside them."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from mixcse_hf.errors import UsageError
from mixcse_hf.models.families import family_of

logger = logging.getLogger(__name__)

GRADIENT_CHECKPOINTING_WARNING = "`is_gradient_checkpointing` is deprecated"
"""The start of the FutureWarning transformers 5 gives on every read of ``is_gradient_checkpointing``."""


@contextlib.contextmanager
def peft_wrapping() -> Iterator[None]:
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` whenever it wraps a model (``PeftModel``'s
    constructor), and transformers warns about it: a warning about peft's code, not ours or the user's, so that one
    warning is silenced here; every other stays."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GRADIENT_CHECKPOINTING_WARNING, category=FutureWarning)
        yield


def default_target_modules(config: PretrainedConfig) -> list[str]:
    """peft's default LoRA targets for the model type (its ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``),
    else the family's where peft lacks it (:data:`mixcse_hf.models.families.FAMILIES`); a one-line error for
    neither."""
    model_type = config.model_type
    if model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
        return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type])
    if family_of(config).lora_target_modules is not None:
        return list(family_of(config).lora_target_modules)
    raise UsageError(
        f"no default LoRA target modules for model_type {model_type!r}; pass --lora_target_modules with the "
        "attention projection names"
    )


def apply_lora(
    model: PreTrainedModel,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: list[str] | None = None,
    train_mlp: bool = True,
) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; with ``train_mlp`` the encoder's pooler (the MixCSE MLP) is a
    ``modules_to_save`` module: trained in full and saved with the adapter."""
    if target_modules is None:
        target_modules = default_target_modules(model.config)
    if r < 1:
        raise UsageError(f"lora_r must be >= 1, got {r}")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=["pooler"] if train_mlp else None,
    )
    try:
        with peft_wrapping():
            peft_model = get_peft_model(model, config)
    except ValueError as err:
        raise UsageError(f"cannot apply LoRA to {target_modules}: {str(err).splitlines()[0]}") from err
    trainable, total = count_parameters(peft_model)
    logger.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return peft_model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def pooler_dense(model: nn.Module) -> nn.Linear | None:
    """The dense layer of the encoder's pooler (the MixCSE MLP) as trained: for a PEFT model, the
    ``modules_to_save`` copy."""
    pooler = getattr(backbone_of(model), "pooler", None)
    if pooler is None:
        return None
    if hasattr(pooler, "modules_to_save"):
        pooler = pooler.modules_to_save[pooler.active_adapter]
    return pooler.dense


def backbone_of(model: nn.Module) -> PreTrainedModel:
    """The ``transformers`` encoder inside ``model`` (itself, or the base model of a PEFT model)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model
