"""Prompts (instructions) put before the texts of a text column, as sentence-transformers applies them.

sentence-transformers prepends a prompt to each text (``prompt + text``, no separator added) and, for a Pooling module
with ``include_prompt`` false, leaves the prompt's first tokens out of the pooled ones: as many as the prompt alone
tokenises to, the tokenizer's leading [CLS]/BOS included and a trailing special token ([SEP]/EOS) not
(:func:`prompt_length`; its ``Transformer._get_prompt_length``). The same count, per row, goes to
:func:`mixcse_hf.models.pooling.exclude_prompt` here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from mixcse_hf.errors import UsageError
from mixcse_hf.models.pooling import POOLERS, get_pooler, inference_pooler


def prompt_length(tokenizer: PreTrainedTokenizerBase, prompt: str) -> int:
    """How many leading tokens of ``prompt + text`` are the prompt's, as sentence-transformers counts them; 0 for
    no prompt."""
    if not prompt:
        return 0
    ids = tokenizer(prompt)["input_ids"]
    return len(ids) - (ids[-1] in tokenizer.all_special_ids)


def with_prompt(prompt: str, texts: Sequence[str]) -> list[str]:
    """``texts``, each with ``prompt`` before it (sentence-transformers' ``prompt + text``)."""
    return [prompt + text for text in texts] if prompt else list(texts)


@dataclass(frozen=True)
class Prompts:
    """The prompt of each text column a model is trained with, saved as sentence-transformers prompts named by the
    column (``text``; ``anchor``, ``positive``, ``negative``).

    Attributes:
        by_column: column -> prompt, for the columns that have one.
        include_prompt: pool the prompt's tokens too (sentence-transformers' ``include_prompt``).
        default_name: the prompt sentence-transformers applies when ``encode`` names none
            (``default_prompt_name``): set where every column has the same prompt (one-column training, say).
    """

    by_column: dict[str, str] = field(default_factory=dict)
    include_prompt: bool = True
    default_name: str | None = None

    @classmethod
    def for_columns(cls, prompts: Sequence[str] | None, columns: Sequence[str], include_prompt: bool) -> Prompts:
        """The ``prompts`` option (one per text column, in order; "" for none) for data of ``columns``."""
        if prompts is not None and len(prompts) != len(columns):
            raise UsageError(
                f"prompts has {len(prompts)} value(s) for the {len(columns)} text column(s) {list(columns)}: give one "
                'per column, in order ("" for none)'
            )
        by_column = {column: prompt for column, prompt in zip(columns, prompts or (), strict=False) if prompt}
        shared = len(by_column) == len(columns) and len(set(by_column.values())) == 1
        return cls(by_column, include_prompt, columns[0] if shared else None)

    def __bool__(self) -> bool:
        return bool(self.by_column)

    def lengths(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, int] | None:
        """Column -> :func:`prompt_length` of its prompt, for pooling without the prompt's tokens; ``None`` when
        they are pooled (``include_prompt``) or there is no prompt."""
        if self.include_prompt or not self.by_column:
            return None
        return {column: prompt_length(tokenizer, prompt) for column, prompt in self.by_column.items()}


def check_prompt_room(tokenizer: PreTrainedTokenizerBase, prompts: Prompts, max_seq_length: int) -> None:
    """Each prompt must leave room for text in ``max_seq_length`` tokens (else every text would be cut off, and a
    pooling without the prompt would pool nothing); else a one-line :class:`UsageError`."""
    for column, prompt in prompts.by_column.items():
        length = prompt_length(tokenizer, prompt)
        if length + 2 > max_seq_length:  # one token of text and the closing special token
            raise UsageError(
                f"the prompt of column {column} takes {length} of the max_seq_length {max_seq_length} tokens, leaving "
                f"no room for its text; pass --max_seq_length {length + 32} or a shorter prompt"
            )


def check_prompt_pooling(
    pooler_type: str, mlp_only_train: bool, prompts: Sequence[str] | None, include_prompt: bool
) -> None:
    """Prompts are saved with the sentence-transformers files, so they need a pooler that has them; leaving the prompt
    out of the pooling needs a pooler over tokens, not one reading the first ([CLS]) token. Else a one-line
    :class:`UsageError`."""
    pooler = get_pooler(inference_pooler(pooler_type, mlp_only_train))
    if any(prompts or ()) and pooler.sentence_transformers_mode is None:
        with_files = ", ".join(name for name, entry in POOLERS.items() if entry.sentence_transformers_mode)
        raise UsageError(
            f"prompts are saved as sentence-transformers prompts, and pooler_type {pooler.name} has no "
            f"sentence-transformers equivalent; use one of {with_files}, or no prompts"
        )
    if not include_prompt and get_pooler(pooler_type).sentence_transformers_mode == "cls":
        raise UsageError(
            f"include_prompt false leaves the prompt's tokens out of a pooling over tokens, and pooler_type "
            f"{pooler_type} reads the first token ([CLS], part of the prompt); use pooler_type avg or include_prompt "
            "true"
        )


def pick_prompt(prompts: Mapping[str, str], default_name: str | None, name: str | None, where: str) -> str:
    """The prompt text ``name`` picks among a model's ``prompts`` (``None``: the default one, if any, else none);
    an unknown name is a one-line :class:`UsageError`."""
    if name is None:
        return prompts.get(default_name, "") if default_name else ""
    if name not in prompts:
        known = ", ".join(prompts) or "none"
        raise UsageError(f"{where} has no prompt named {name!r} (its prompts: {known}); pass one of them")
    return prompts[name]
