"""Backbone families: everything that differs between the model families mixcse_hf trains, in one registry.

Shaped like the pooler registry (:mod:`mixcse_hf.models.pooling`): a :class:`Family` per family, found by the
config's ``model_type``. Nothing else in the package branches on ``model_type``. A model of a type not listed
here is an encoder of the ``other`` family: it trains padded, with the poolers that fit it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mixcse_hf.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """One backbone family: what the package needs to know to train and pack it.

    Attributes:
        name: how docs and logs call the family.
        model_types: the ``model_type`` values of its configs.
        causal: a decoder: each token attends to the tokens before it only (``bidirectional`` can lift it).
        default_pooler: the pooler of ``pooler_type: auto`` when neither a sentence-transformers folder nor a
            mixcse_hf checkpoint records one (``cls`` falls back to ``avg`` on a model without a pooler layer).
        packs: its ``forward`` takes ``position_ids`` and a 4-D attention mask as they are, so padding-free rows
            apply.
        positions_after_pad: position ids count from ``pad_token_id + 1`` (RoBERTa-style embeddings), else from 0.
        appends_eos: sentences end with the EOS token, the token ``last`` pooling reads (decoder embedders).
        lora_target_modules: the attention projections LoRA adapts, only where peft's own mapping
            (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``) lacks the model type.
    """

    name: str
    model_types: tuple[str, ...]
    causal: bool = False
    default_pooler: str = "cls"
    packs: bool = True
    positions_after_pad: bool = False
    appends_eos: bool = False
    lora_target_modules: tuple[str, ...] | None = None


def _decoder(name: str, *model_types: str) -> Family:
    return Family(name, model_types, causal=True, default_pooler="last", appends_eos=True)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("BERT", ("bert",)),
        Family("RoBERTa", ("roberta", "xlm-roberta"), positions_after_pad=True),
        Family("MPNet", ("mpnet",), positions_after_pad=True, lora_target_modules=("q", "v")),
        Family("ModernBERT", ("modernbert",), default_pooler="avg", lora_target_modules=("Wqkv",)),
        Family("DistilBERT", ("distilbert",), packs=False, lora_target_modules=("q_lin", "v_lin")),
        _decoder("Qwen3", "qwen3"),
        _decoder("Llama", "llama"),
        _decoder("Mistral", "mistral"),
        _decoder("Gemma 3", "gemma3_text"),
    )
}
"""The family registry: name -> :class:`Family`."""

OTHER = Family("other", (), packs=False)
"""Any model type not in :data:`FAMILIES`: a padded encoder."""

_BY_MODEL_TYPE = {model_type: family for family in FAMILIES.values() for model_type in family.model_types}


def family_of(config: Any) -> Family:
    """The family of a model config (:data:`OTHER` for a model type the registry does not list)."""
    return _BY_MODEL_TYPE.get(getattr(config, "model_type", None), OTHER)


def is_causal(config: Any) -> bool:
    """Whether the model attends causally: a decoder family, unless its config sets ``is_causal: false``
    (``bidirectional``), which transformers' mask functions read."""
    return family_of(config).causal and getattr(config, "is_causal", True)


def set_bidirectional(config: Any) -> None:
    """Make a decoder attend both ways: ``is_causal: false`` in its config, which every loader of the saved model
    (``AutoModel``, remote code, sentence-transformers) reads. An encoder is a one-line :class:`UsageError`."""
    family = family_of(config)
    if not family.causal:
        raise UsageError(
            f"bidirectional applies to decoder families ({', '.join(f.name for f in FAMILIES.values() if f.causal)}); "
            f"{family.name} ({config.model_type}) already attends both ways: unset bidirectional"
        )
    config.is_causal = False


def position_start(config: Any) -> int:
    """The position id the model gives a sentence's first token."""
    return config.pad_token_id + 1 if family_of(config).positions_after_pad else 0


def sliding_window(config: Any) -> int | None:
    """The fewest tokens any sliding-window attention layer of the model sees around a token (None: no such layer).
    A sentence no longer than it is seen whole by every layer, so packing it alone in its segment changes
    nothing."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


def packing_refusal(config: Any, max_seq_length: int | None = None) -> str | None:
    """Why padding-free rows do not apply to this model (None: they do)."""
    family = family_of(config)
    if not family.packs:
        packing = ", ".join(f.name for f in FAMILIES.values() if f.packs)
        return f"padding_free does not support {family.name} ({config.model_type}): supported for {packing}"
    if config._attn_implementation not in ("sdpa", "eager"):
        return f"padding_free needs sdpa or eager attention, not {config._attn_implementation}"
    window = sliding_window(config)
    if window is not None and max_seq_length is not None and max_seq_length > window:
        return (
            f"padding_free packs sentences of at most the {window} tokens {family.name}'s sliding-window layers see "
            f"whole; max_seq_length is {max_seq_length}"
        )
    return None


def choose_padding_free(setting: str, config: Any, max_seq_length: int | None) -> bool:
    """``padding_free`` (``auto``, ``true`` or ``false``) for this model: ``auto`` packs where the family allows
    it (logged), ``true`` where it does not is a one-line :class:`UsageError`."""
    refusal = packing_refusal(config, max_seq_length)
    if setting == "auto":
        logger.info(
            "padding_free auto: %s",
            f"off ({refusal})" if refusal else f"on ({family_of(config).name} packs each step without pad tokens)",
        )
        return refusal is None
    if setting == "true" and refusal is not None:
        raise UsageError(f"{refusal}; pass --padding_free false (or auto)")
    return setting == "true"
