"""Sentence pooling over a ``transformers`` encoder's outputs.

Self-contained on purpose (torch and transformers only): this file is also written into every checkpoint as
``modeling_mixcse.py``, where ``AutoModel.from_pretrained(path, trust_remote_code=True)`` loads it and returns
the encoder with a ``sentence_embedding`` output for the pooler recorded in its config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

POOLER_TYPES = ("cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2")
"""``cls``: [CLS] through the MLP (the encoder's pooler dense + tanh), as SimCSE/MixCSE train;
``cls_before_pooler``: raw [CLS]; ``avg``: mean of the last layer; ``avg_first_last``: mean of the embedding
layer and the last layer; ``avg_top2``: mean of the last two layers. Means skip padding."""

CONFIG_POOLER_KEY = "mixcse_pooler_type"
CONFIG_MLP_ONLY_TRAIN_KEY = "mixcse_mlp_only_train"


def inference_pooler(pooler_type: str, mlp_only_train: bool) -> str:
    """The pooler used outside training: the MLP is dropped when it was trained with ``mlp_only_train``."""
    return "cls_before_pooler" if pooler_type == "cls" and mlp_only_train else pooler_type


def recorded_pooler(config: Any, default: str = "cls_before_pooler") -> str:
    """The inference pooler recorded in a model config by mixcse_hf training, else ``default``."""
    pooler_type = getattr(config, CONFIG_POOLER_KEY, None)
    if pooler_type is None:
        return default
    return inference_pooler(pooler_type, getattr(config, CONFIG_MLP_ONLY_TRAIN_KEY, False))


def needs_hidden_states(pooler_type: str) -> bool:
    return pooler_type in ("avg_first_last", "avg_top2")


def _masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def pool(outputs: Mapping[str, torch.Tensor], attention_mask: torch.Tensor, pooler_type: str) -> torch.Tensor:
    """Sentence embeddings (B, d) from an encoder's outputs for ``pooler_type`` (see :data:`POOLER_TYPES`)."""
    if pooler_type == "cls":
        return outputs["pooler_output"]
    if pooler_type == "cls_before_pooler":
        return outputs["last_hidden_state"][:, 0]
    if pooler_type == "avg":
        return _masked_mean(outputs["last_hidden_state"], attention_mask)
    if pooler_type == "avg_first_last":
        return _masked_mean((outputs["hidden_states"][0] + outputs["hidden_states"][-1]) / 2.0, attention_mask)
    if pooler_type == "avg_top2":
        return _masked_mean((outputs["hidden_states"][-1] + outputs["hidden_states"][-2]) / 2.0, attention_mask)
    raise ValueError(f"pooler_type must be one of {', '.join(POOLER_TYPES)}; got {pooler_type!r}")


@dataclass
class SentenceEmbeddingOutput(BaseModelOutputWithPoolingAndCrossAttentions):
    """The encoder's usual outputs plus ``sentence_embedding`` (B, d)."""

    sentence_embedding: torch.FloatTensor | None = None


class SentenceEmbeddingMixin:
    """Put before an encoder class (``class M(SentenceEmbeddingMixin, BertModel)``): ``forward`` also returns
    ``sentence_embedding``, pooled with the pooler recorded in the config. The weights are the encoder's own."""

    def forward(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> SentenceEmbeddingOutput:
        pooler_type = recorded_pooler(self.config)
        kwargs["return_dict"] = True
        if needs_hidden_states(pooler_type):
            kwargs["output_hidden_states"] = True
        outputs = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if attention_mask is None:
            hidden = outputs["last_hidden_state"]
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        return SentenceEmbeddingOutput(**outputs, sentence_embedding=pool(outputs, attention_mask, pooler_type))
