"""Run MTEB (v2) STS tasks with a mixcse_hf encoder, offline, on SentEval files.

    from mixcse_hf.evaluation.mteb_adapter import mteb_sts_score
    score = mteb_sts_score(SentenceEncoder.from_pretrained(path), "stsb", senteval_dir="../shared/data/senteval")

MTEB normally downloads each task's dataset from the Hub; here the task's test split is injected from the
local SentEval files (``mixcse_hf.evaluation.sts_data``), so nothing is downloaded and nothing is cached or written.
Needs ``pip install mteb==2.26.24`` (the ``[mteb]`` extra).
"""

from __future__ import annotations

import numpy as np
from datasets import DatasetDict
from mteb import evaluate, get_task
from mteb.abstasks import AbsTaskSTS
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from torch.utils.data import DataLoader

from mixcse_hf.evaluation.sts_data import StsPairs, load_task
from mixcse_hf.models.encoder import SentenceEncoder

MTEB_TASKS = {
    "sts12": "STS12",
    "sts13": "STS13",
    "sts14": "STS14",
    "sts15": "STS15",
    "sts16": "STS16",
    "stsb": "STSBenchmark",
    "sickr": "SICK-R",
}


class MTEBSentenceEncoder(AbsEncoder):
    """The ``encode`` interface MTEB v2 expects, over a :class:`SentenceEncoder`; cosine similarity."""

    def __init__(self, encoder: SentenceEncoder, name: str = "local/mixcse-hf-model", batch_size: int = 128) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": name,
                "revision": "local",
                "embed_dim": encoder.model.config.hidden_size,
                "similarity_fn_name": ScoringFunction.COSINE,
                "framework": ["PyTorch"],
            }
        )

    def encode(self, inputs: DataLoader, **kwargs: object) -> np.ndarray:
        sentences = [text for batch in inputs for text in batch["text"]]
        return self.encoder.encode(sentences, batch_size=self.batch_size, show_progress_bar=False).numpy()


def local_task(task: str, pairs: StsPairs) -> AbsTaskSTS:
    """The MTEB task for ``task`` with ``pairs`` injected as its test split (no Hub download)."""
    mteb_task = get_task(MTEB_TASKS[task])
    # MTEB has no public way to hand a task local data; its tasks' own load_data fills these two attributes.
    mteb_task.dataset = {"default": DatasetDict({"test": pairs.to_dataset()})}
    mteb_task.data_loaded = True
    return mteb_task


def mteb_sts_score(encoder: SentenceEncoder, task: str, senteval_dir: str, batch_size: int = 128) -> float:
    """MTEB's main score (cosine Spearman) x 100 of ``task`` on its SentEval test files."""
    merged = StsPairs.concat(load_task(task, "test", senteval_dir).values())
    result = evaluate(
        MTEBSentenceEncoder(encoder, batch_size=batch_size),
        local_task(task, merged),
        cache=None,
        overwrite_strategy="always",
        show_progress_bar=False,
        co2_tracker=False,
    )
    return 100 * result.task_results[0].scores["test"][0]["main_score"]
