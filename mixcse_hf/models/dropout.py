"""Dropout in training: the augmentation of unsupervised SimCSE/MixCSE, whose two views of a sentence differ only by
their dropout masks.

ModernBERT and most decoder checkpoints ship with every dropout probability at 0: trained unsupervised as shipped,
both views are the same vector and nothing is learned. Modules read their dropout probability from the config when
they are built, so a training dropout is a config override at load time (:meth:`TrainingDropout.overrides`, given to
:func:`mixcse_hf.models.encoder.load_pretrained`), after which the config gets its shipped values back: the saved
``config.json`` loads the model as it was shipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from mixcse_hf.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_DROPOUT = 0.1
"""What ``train_dropout: auto`` sets when the model has none and the views need it: BERT's, which SimCSE trains with."""
DROPOUT_KEY = re.compile(r"dropout|pdrop")
"""Config attributes of a dropout probability (``hidden_dropout_prob``, ``attention_dropout``, ``resid_pdrop``…)."""
HEAD_ONLY_PREFIXES = ("classifier", "summary")
"""Dropout of task heads (``classifier_dropout``, ``summary_first_dropout``), which an ``AutoModel`` backbone lacks."""


def dropout_probabilities(config: Any) -> dict[str, float]:
    """The dropout probabilities a ``transformers`` config gives its backbone's modules, by attribute name."""
    return {
        key: float(value)
        for key, value in config.to_dict().items()
        if DROPOUT_KEY.search(key)
        and not key.startswith(HEAD_ONLY_PREFIXES)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }


def parse_train_dropout(value: str | float) -> str:
    """``train_dropout`` as given (a string, or a number from a YAML config) -> ``"auto"`` or a probability written
    as ``%g``; anything else is a one-line :class:`UsageError`."""
    text = str(value).strip().lower()
    if text == "auto":
        return text
    try:
        probability = float(text)
    except ValueError:
        probability = -1.0
    if not 0 <= probability < 1:
        raise UsageError(f"train_dropout must be auto or a probability in [0, 1), got {value!r}; the default is auto")
    return f"{probability:g}"


@dataclass
class TrainingDropout:
    """The dropout a run trains with, decided from the model's config when it loads (:meth:`overrides`).

    Attributes:
        setting: ``train_dropout``: ``"auto"`` keeps the model's dropout, unless every probability is 0 and
            ``needs_views``: then :data:`DEFAULT_TRAIN_DROPOUT`; a probability sets every key of
            :func:`dropout_probabilities` to it.
        needs_views: the objective's positives are dropout views (unsupervised: one text column). Such a run with
            no dropout (0, or a config naming none) is refused.
        values: once loaded, every dropout probability in training.
        changed: once loaded, those set in place of the shipped ones (not in the saved config).
    """

    setting: str = "auto"
    needs_views: bool = False
    values: dict[str, float] = field(default_factory=dict)
    changed: dict[str, float] = field(default_factory=dict)

    def overrides(self, config: Any) -> dict[str, float]:
        """The config values the modules are to be built with (none: as shipped); refuses a run whose views would be
        identical."""
        shipped = dropout_probabilities(config)
        probability = None if self.setting == "auto" else float(self.setting)
        if probability is None and self.needs_views and not any(shipped.values()):
            probability = DEFAULT_TRAIN_DROPOUT
        if self.needs_views and not shipped:
            raise UsageError(
                f"{type(config).__name__} names no dropout probability, the only difference between the two views of "
                "a sentence in unsupervised training; train on pairs (text_columns ANCHOR POSITIVE)"
            )
        if self.needs_views and probability == 0:
            raise UsageError(
                "train_dropout 0 makes the two views of each sentence identical in unsupervised training (one text "
                f"column): nothing would be learned; pass --train_dropout auto (or e.g. {DEFAULT_TRAIN_DROPOUT})"
            )
        if probability is not None and not shipped:
            raise UsageError(
                f"train_dropout {self.setting}: {type(config).__name__} names no dropout probability to set; pass "
                "--train_dropout auto"
            )
        self.changed = {} if probability is None else {k: probability for k, v in shipped.items() if v != probability}
        self.values = {**shipped, **self.changed}
        if self.changed:
            logger.info(
                "Training dropout %g (train_dropout %s): %s set for training, shipped as %s; the saved config keeps "
                "the shipped values",
                probability,
                self.setting,
                ", ".join(self.changed),
                ", ".join(f"{shipped[key]:g}" for key in self.changed),
            )
        return self.changed
