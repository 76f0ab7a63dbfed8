"""STS data (SentEval layout or the public Hub copy) and the SentEval-protocol score: Spearman x 100 of cosines."""

from __future__ import annotations

import os
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from scipy.stats import spearmanr

from mixcse_hf.errors import UsageError
from mixcse_hf.modeling import SentenceEncoder

STSB_SPLITS = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
STSB_HUB_ID = "sentence-transformers/stsb"
STSB_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


@dataclass
class StsPairs:
    """Sentence pairs with gold similarity scores (parallel lists)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.scores)

    def to_dataset(self) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"sentence1": self.sentences1, "sentence2": self.sentences2, "score": self.scores}
        )

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset) -> StsPairs:
        return cls(list(dataset["sentence1"]), list(dataset["sentence2"]), list(dataset["score"]))


def read_stsb_file(path: str) -> StsPairs:
    """Parse a SentEval ``STSBenchmark/sts-*.csv``: tab-separated, score in field 4, sentences in 5 and 6.

    Some lines carry extra trailing fields, so this splits on tabs rather than using a CSV parser.
    """
    if not os.path.isfile(path):
        raise UsageError(f"STS-B file {path!r} does not exist; senteval_dir must hold STS/STSBenchmark/")
    pairs = StsPairs([], [], [])
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            try:
                score = float(fields[4])
                sentence1, sentence2 = fields[5], fields[6]
            except (IndexError, ValueError):
                raise UsageError(
                    f"{path}:{line_number}: malformed STS-B line (expected >= 7 tab-separated fields with a "
                    "numeric score in field 5); fix or remove that line"
                ) from None
            pairs.sentences1.append(sentence1)
            pairs.sentences2.append(sentence2)
            pairs.scores.append(score)
    return pairs


def load_stsb(split: str, senteval_dir: str | None = None) -> StsPairs:
    """STS-B ``split`` (train/dev/test) from a SentEval-layout directory, or from the Hub when ``None``."""
    if split not in STSB_SPLITS:
        raise UsageError(f"STS-B split must be one of {sorted(STSB_SPLITS)}, got {split!r}")
    if senteval_dir is not None:
        return read_stsb_file(os.path.join(senteval_dir, "STS", "STSBenchmark", STSB_SPLITS[split]))
    hub = datasets.load_dataset(STSB_HUB_ID, split=STSB_HUB_SPLITS[split])
    # The Hub copy scales gold scores to [0, 1]; SentEval's are [0, 5]. Spearman is unaffected.
    return StsPairs(list(hub["sentence1"]), list(hub["sentence2"]), [5.0 * s for s in hub["score"]])


def sts_spearman(
    encoder: SentenceEncoder, pairs: StsPairs, batch_size: int = 128, show_progress_bar: bool | None = None
) -> float:
    """Spearman correlation x 100 between gold scores and cosine similarities of the encoded pairs."""
    embeddings = encoder.encode(
        pairs.sentences1 + pairs.sentences2, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    first, second = embeddings[: len(pairs)], embeddings[len(pairs) :]
    cosines = torch.nn.functional.cosine_similarity(first, second, dim=-1)
    return float(spearmanr(np.asarray(pairs.scores), cosines.numpy()).statistic * 100)
