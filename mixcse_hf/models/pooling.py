"""Sentence pooling over a ``transformers`` encoder's outputs.

Self-contained on purpose (torch and transformers only): this file is also written into every checkpoint as
``modeling_mixcse.py``, where ``AutoModel.from_pretrained(path, trust_remote_code=True)`` loads it and returns
the encoder with a ``sentence_embedding`` output for the pooler recorded in its config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

CONFIG_POOLER_KEY = "mixcse_pooler_type"
CONFIG_MLP_ONLY_TRAIN_KEY = "mixcse_mlp_only_train"


def _masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def _token_at(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return hidden[torch.arange(hidden.size(0), device=hidden.device), index]


def _first_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's first real token ([CLS]), for right and left padding alike."""
    return _token_at(hidden, attention_mask.long().argmax(1))


def _last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token, for right and left padding alike."""
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    return _token_at(hidden, (attention_mask.bool() * positions).argmax(1))


@dataclass(frozen=True)
class Pooler:
    """One way of turning an encoder's outputs into a sentence embedding: everything the package knows about it.

    Attributes:
        name: the ``pooler_type`` value.
        pool: ``(outputs, attention_mask) -> (B, d)``; ``outputs`` has ``last_hidden_state``, ``pooler_output``
            and, when ``needs_hidden_states``, ``hidden_states``.
        description: one line for ``--help`` and the docs.
        uses_mlp: reads the encoder's pooler layer (dense + tanh over [CLS], the SimCSE/MixCSE MLP), which is then
            trained, re-initialised by ``reinit_mlp`` and exported; otherwise that layer is frozen.
        needs_hidden_states: the encoder must return every layer's hidden states.
        reads_first_token: the embedding is the first token's state, which a causal decoder computes from that
            token alone: refused for causal models.
        without_mlp: the pooler used outside training with ``mlp_only_train`` (the MLP dropped), if different.
        sentence_transformers_mode: the sentence-transformers ``Pooling`` mode giving the same embedding (plus a
            Tanh ``Dense`` holding the MLP when ``uses_mlp``), or ``None`` when there is none.
        card_code: how the model card tells a plain ``transformers`` user to pool ``outputs`` of ``batch``
            (``outputs`` carries ``hidden_states``).
    """

    name: str
    pool: Callable[[Mapping[str, Any], torch.Tensor], torch.Tensor]
    description: str
    uses_mlp: bool = False
    needs_hidden_states: bool = False
    reads_first_token: bool = False
    without_mlp: str | None = None
    sentence_transformers_mode: str | None = None
    card_code: str | None = None


def _mean_code(hidden: str) -> str:
    return f'mask = batch["attention_mask"].unsqueeze(-1)\nembedding = ({hidden} * mask).sum(1) / mask.sum(1)'


POOLERS: dict[str, Pooler] = {
    pooler.name: pooler
    for pooler in (
        Pooler(
            "cls",
            lambda outputs, mask: outputs["pooler_output"],
            "[CLS] through the MLP (the encoder's pooler dense + tanh), as SimCSE/MixCSE train",
            uses_mlp=True,
            reads_first_token=True,
            without_mlp="cls_before_pooler",
            sentence_transformers_mode="cls",
            card_code="embedding = outputs.pooler_output  # [CLS] through the trained MLP (dense + tanh)",
        ),
        Pooler(
            "cls_before_pooler",
            lambda outputs, mask: _first_token(outputs["last_hidden_state"], mask),
            "raw [CLS] of the last layer",
            reads_first_token=True,
            sentence_transformers_mode="cls",
            card_code="embedding = outputs.last_hidden_state[:, 0]  # [CLS]",
        ),
        Pooler(
            "avg",
            lambda outputs, mask: _masked_mean(outputs["last_hidden_state"], mask),
            "mean of the last layer over real tokens",
            sentence_transformers_mode="mean",
            card_code=_mean_code("outputs.last_hidden_state"),
        ),
        Pooler(
            "avg_first_last",
            lambda outputs, mask: _masked_mean(
                (outputs["hidden_states"][0] + outputs["hidden_states"][-1]) / 2.0, mask
            ),
            "mean of the embedding layer and the last layer",
            needs_hidden_states=True,
            card_code=_mean_code("(outputs.hidden_states[0] + outputs.hidden_states[-1]) / 2"),
        ),
        Pooler(
            "avg_top2",
            lambda outputs, mask: _masked_mean(
                (outputs["hidden_states"][-1] + outputs["hidden_states"][-2]) / 2.0, mask
            ),
            "mean of the last two layers",
            needs_hidden_states=True,
            card_code=_mean_code("(outputs.hidden_states[-1] + outputs.hidden_states[-2]) / 2"),
        ),
        Pooler(
            "last",
            lambda outputs, mask: _last_token(outputs["last_hidden_state"], mask),
            "the last real token (EOS of decoders)",
            sentence_transformers_mode="lasttoken",
            card_code=(
                'mask = batch["attention_mask"]\n'
                "last = (mask * torch.arange(mask.size(1))).argmax(1)  # the last real token, any padding side\n"
                "embedding = outputs.last_hidden_state[torch.arange(len(last)), last]"
            ),
        ),
    )
}
"""The pooler registry: ``pooler_type`` -> :class:`Pooler`. Means skip padding."""

POOLER_TYPES = tuple(POOLERS)


def get_pooler(pooler_type: str) -> Pooler:
    if pooler_type not in POOLERS:
        raise ValueError(f"pooler_type must be one of {', '.join(POOLER_TYPES)}; got {pooler_type!r}")
    return POOLERS[pooler_type]


def inference_pooler(pooler_type: str, mlp_only_train: bool) -> str:
    """The pooler used outside training: the MLP is dropped when it was trained with ``mlp_only_train``."""
    without_mlp = get_pooler(pooler_type).without_mlp
    return without_mlp if mlp_only_train and without_mlp else pooler_type


def recorded_pooler(config: Any, default: str = "cls_before_pooler") -> str:
    """The inference pooler recorded in a model config by mixcse_hf training, else ``default``."""
    pooler_type = getattr(config, CONFIG_POOLER_KEY, None)
    if pooler_type is None:
        return default
    return inference_pooler(pooler_type, getattr(config, CONFIG_MLP_ONLY_TRAIN_KEY, False))


def needs_hidden_states(pooler_type: str) -> bool:
    return get_pooler(pooler_type).needs_hidden_states


def exclude_prompt(attention_mask: torch.Tensor, prompt_lengths: torch.Tensor | None) -> torch.Tensor:
    """The mask of the tokens to pool: ``attention_mask`` (B, L) less each row's first ``prompt_lengths`` (B,) real
    tokens (left padding or not), as sentence-transformers' Pooling with ``include_prompt`` false; ``None``: as is."""
    if prompt_lengths is None:
        return attention_mask
    first_real = attention_mask.to(torch.int32).argmax(dim=1)
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    prompt = positions[None, :] < (first_real + prompt_lengths.to(first_real.device))[:, None]
    return attention_mask.masked_fill(prompt, 0)


def pool(outputs: Mapping[str, torch.Tensor], attention_mask: torch.Tensor, pooler_type: str) -> torch.Tensor:
    """Sentence embeddings (B, d) from an encoder's outputs for ``pooler_type`` (see :data:`POOLERS`)."""
    return get_pooler(pooler_type).pool(outputs, attention_mask)


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
