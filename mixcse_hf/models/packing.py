"""Padding-free encoding: a step's sentences packed into rows without pad tokens, the same embeddings for less work.

A padded batch (N, L) spends every layer's compute on its pad tokens (about a third of a random batch of wiki
sentences at length 32). Packing puts the N sentences one after another into R rows of at most ``pack_length``
tokens (first fit, in batch order), with

- ``position_ids`` restarting at each sentence, at the position the model gives a sentence's first token (0;
  RoBERTa, XLM-R and MPNet ``padding_idx + 1``: :func:`mixcse_hf.models.families.position_start`);
- a block-diagonal 4-D attention mask (R, 1, W, W), so each token attends only to its own sentence, and within it
  only to the tokens before it for a causal decoder: boolean for SDPA (its CPU flash kernel takes it), additive
  for eager attention (MPNet has only that); the row tails attend to themselves only, so no softmax row is empty;
  sliding-window layers see whole sentences when these are no longer than the window (else packing is refused);
- pooling per sentence: the hidden states are gathered back into the padded (N, L) layout, so every pooler of
  :data:`mixcse_hf.models.pooling.POOLERS` applies unchanged (the MLP is the encoder's own pooler layer, run on
  each sentence's [CLS]).

With dropout off, packed and padded embeddings agree to float rounding (``tests/models/test_packing.py``).
Attention costs grow with the row length, so rows are bounded by ``pack_length`` (default: twice the batch's
padded length).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn
from transformers import PreTrainedModel

from mixcse_hf.errors import UsageError
from mixcse_hf.models.families import is_causal, packing_refusal, position_start, sliding_window
from mixcse_hf.models.lora import backbone_of
from mixcse_hf.models.pooling import exclude_prompt, get_pooler, needs_hidden_states, pool

PACKED_FEATURES = ("input_ids", "token_type_ids")
"""Per-token features moved into the packed rows; ``attention_mask`` is replaced, ``position_ids`` built."""


def packable_backbone(model: nn.Module, max_seq_length: int | None = None) -> PreTrainedModel:
    """The ``transformers`` encoder inside ``model`` (DDP, PEFT unwrapped), checked to accept packed rows of
    sentences of up to ``max_seq_length`` tokens."""
    backbone = backbone_of(extract_model_from_parallel(model))
    refusal = packing_refusal(backbone.config, max_seq_length)
    if refusal is not None:
        raise UsageError(f"{refusal}; pass --padding_free false")
    return backbone


def longest_sentence(model: nn.Module, attention_mask: torch.Tensor) -> int:
    """The longest sentence's token count, as far as packing needs it: the padded width, which bounds it, unless the
    width exceeds a sliding window; only then counted (a device sync a training step otherwise does without)."""
    window = sliding_window(backbone_of(extract_model_from_parallel(model)).config)
    width = attention_mask.size(1)
    return int(attention_mask.sum(1).max()) if window is not None and width > window else width


def check_sequence_length(backbone: PreTrainedModel, max_seq_length: int) -> None:
    """Sentences of ``max_seq_length`` tokens need that many position embeddings after the first position id; else
    a one-line :class:`UsageError` (the forward pass would fail with an index error, minutes in)."""
    positions = getattr(backbone.config, "max_position_embeddings", None)
    if positions is None:
        return
    usable = positions - position_start(backbone.config)
    if max_seq_length > usable:
        raise UsageError(
            f"max_seq_length {max_seq_length} exceeds the {usable} token positions of {type(backbone).__name__}; "
            f"pass --max_seq_length {usable} or less"
        )


def first_fit(lengths: list[int], pack_length: int) -> tuple[list[int], list[int], list[int]]:
    """Place sentences of ``lengths`` tokens, in order, into the first row with room (rows of ``pack_length``
    tokens) -> (row of each sentence, its first column, tokens used per row)."""
    rows, starts, used = [], [], []
    for length in lengths:
        row = next((r for r, filled in enumerate(used) if filled + length <= pack_length), len(used))
        if row == len(used):
            used.append(0)
        rows.append(row)
        starts.append(used[row])
        used[row] += length
    return rows, starts, used


@dataclass
class PackedBatch:
    """Packed rows and the way back to the padded layout.

    Attributes:
        features: ``input_ids`` (and ``token_type_ids``), ``position_ids`` (R, W) and ``attention_mask``
            (R, 1, W, W), the encoder's inputs.
        index: (N, L) positions in the flattened (R * W) rows of each sentence's tokens (0 past its end).
        sentence_mask: (N, L) 1 for each sentence's tokens: the padded layout's attention mask.
    """

    features: dict[str, torch.Tensor]
    index: torch.Tensor
    sentence_mask: torch.Tensor

    def unpack(self, hidden: torch.Tensor) -> torch.Tensor:
        """(R, W, d) hidden states of the packed rows -> (N, L, d) per sentence, differentiably."""
        return hidden.reshape(-1, hidden.size(-1))[self.index]

    @property
    def real_token_share(self) -> float:
        return float(self.sentence_mask.sum() / self.features["input_ids"].numel())


def pack_features(
    features: Mapping[str, torch.Tensor],
    pack_length: int | None,
    first_position: int,
    mask_dtype: torch.dtype,
    causal: bool = False,
) -> PackedBatch:
    """Pack padded tokenised ``features`` (``input_ids``, ``attention_mask``…, each (N, L), padded on either side)
    into rows of at most ``pack_length`` tokens (None: 2 L). ``mask_dtype``: ``torch.bool`` for SDPA, a float
    dtype for an additive mask (eager attention); ``causal``: each token attends to its sentence's tokens up to
    itself."""
    mask = features["attention_mask"].bool()
    device, (count, width) = mask.device, mask.shape
    lengths = mask.sum(1)
    limit = pack_length or 2 * width
    longest = int(lengths.max())
    if longest > limit:
        raise UsageError(f"a sentence has {longest} tokens, more than pack_length {limit}; raise --pack_length")
    rows, starts, used = first_fit(lengths.tolist(), limit)
    packed_width = max(used)
    sentence_start = torch.tensor(rows, device=device) * packed_width + torch.tensor(starts, device=device)
    offsets = torch.arange(width, device=device).expand(count, width)
    within = mask.long().cumsum(1) - 1  # each real token's place in its sentence, whichever side the padding is
    # Destination of each real token, in the order boolean indexing reads them: sentence by sentence.
    destination = (sentence_start[:, None] + within)[mask]
    size = len(used) * packed_width
    packed = {}
    for name in PACKED_FEATURES:
        if name in features:
            flat = features[name].new_zeros(size)
            flat[destination] = features[name][mask]
            packed[name] = flat.view(len(used), packed_width)
    positions = torch.full((size,), first_position, dtype=torch.long, device=device)
    positions[destination] = within[mask] + first_position
    packed["position_ids"] = positions.view(len(used), packed_width)
    segments = torch.full((size,), -1, dtype=torch.long, device=device)  # row tails: a segment of their own
    segments[destination] = torch.arange(count, device=device).repeat_interleave(lengths)
    packed["attention_mask"] = block_diagonal_mask(segments.view(len(used), packed_width), mask_dtype, causal)
    sentence_mask = offsets < lengths[:, None]
    index = torch.where(sentence_mask, sentence_start[:, None] + offsets, 0)
    return PackedBatch(packed, index, sentence_mask.long())


def block_diagonal_mask(segments: torch.Tensor, dtype: torch.dtype, causal: bool = False) -> torch.Tensor:
    """(R, W) segment ids -> (R, 1, W, W): True (or 0.0) where query and key share a segment (and, ``causal``, the
    key is not after the query), else False (or the dtype's lowest value, added to the attention scores)."""
    same = (segments[:, :, None] == segments[:, None, :])[:, None]
    if causal:
        same = same & torch.ones(same.shape[-2:], dtype=torch.bool, device=same.device).tril()
    if dtype == torch.bool:
        return same
    return torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill(~same, torch.finfo(dtype).min)


def embed_packed(
    model: nn.Module,
    features: Mapping[str, torch.Tensor],
    pooler_type: str,
    pack_length: int | None = None,
    prompt_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`mixcse_hf.models.encoder.embed` without pad tokens: pooled embeddings (N, d) of padded
    ``features`` (N, L), computed on packed rows (see the module docstring); ``prompt_lengths``: as there."""
    backbone = packable_backbone(model, longest_sentence(model, features["attention_mask"]))
    eager = backbone.config._attn_implementation == "eager"
    mask_dtype = backbone.get_input_embeddings().weight.dtype if eager else torch.bool
    config = backbone.config
    packed = pack_features(features, pack_length, position_start(config), mask_dtype, is_causal(config))
    hidden_states = needs_hidden_states(pooler_type)
    outputs = model(**packed.features, output_hidden_states=hidden_states, return_dict=True)
    per_sentence = {"last_hidden_state": packed.unpack(outputs["last_hidden_state"])}
    if hidden_states:
        per_sentence["hidden_states"] = [packed.unpack(hidden) for hidden in outputs["hidden_states"]]
    if get_pooler(pooler_type).uses_mlp:
        per_sentence["pooler_output"] = backbone.pooler(per_sentence["last_hidden_state"])
    return pool(per_sentence, exclude_prompt(packed.sentence_mask, prompt_lengths), pooler_type)
