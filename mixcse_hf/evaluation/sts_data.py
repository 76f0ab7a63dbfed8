"""STS data in the SentEval layout (the files SimCSE and MixCSE evaluate on), or the public Hub copies.

Layout under ``senteval_dir`` (see ``../shared/data/README.md``):

- ``STS/STS1{2..6}-en-test/STS.input.<subset>.txt`` (``sent1<TAB>sent2``) + ``STS.gs.<subset>.txt`` (one score
  per line; pairs whose gold line is empty are dropped, as SentEval does);
- ``STS/STSBenchmark/sts-{train,dev,test}.csv``: tab-separated, score in field 4, sentences in 5 and 6;
- ``SICK/SICK_{train,trial,test_annotated}.txt``: tab-separated with a header; trial is the dev split.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import datasets

from mixcse_hf.errors import UsageError

STS_YEARS = {
    # SentEval's subset lists; STS13's SMT subset ships no input file.
    "sts12": ("STS12-en-test", ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")),
    "sts13": ("STS13-en-test", ("FNWN", "headlines", "OnWN")),
    "sts14": ("STS14-en-test", ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news")),
    "sts15": ("STS15-en-test", ("answers-forums", "answers-students", "belief", "headlines", "images")),
    "sts16": ("STS16-en-test", ("answer-answer", "headlines", "plagiarism", "postediting", "question-question")),
}
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
TASKS = (*STS_YEARS, "stsb", "sickr")
HUB_COPIES = {
    # task -> (dataset id, {our split: hub split}); MTEB's copies: columns sentence1, sentence2, score.
    "stsb": ("mteb/stsbenchmark-sts", {"train": "train", "dev": "validation", "test": "test"}),
    "sickr": ("mteb/sickr-sts", {"test": "test"}),
    **{name: (f"mteb/{name}-sts", {"test": "test"}) for name in STS_YEARS},
}


@dataclass
class StsPairs:
    """Sentence pairs with gold similarity scores (parallel lists), and the files they came from."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.scores)

    def to_dataset(self) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"sentence1": self.sentences1, "sentence2": self.sentences2, "score": self.scores}
        )

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset) -> StsPairs:
        return cls(list(dataset["sentence1"]), list(dataset["sentence2"]), list(dataset["score"]))

    @classmethod
    def concat(cls, parts: Iterable[StsPairs]) -> StsPairs:
        """All ``parts`` one after another (the "all" setting of STS12-16), their files included."""
        merged = cls([], [], [])
        for part in parts:
            merged.sentences1 += part.sentences1
            merged.sentences2 += part.sentences2
            merged.scores += part.scores
            merged.files += part.files
        return merged


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise UsageError(f"{what} file {path!r} does not exist; senteval_dir must hold the SentEval layout")


def _malformed(path: str, line_number: int, expected: str) -> UsageError:
    return UsageError(f"{path}:{line_number}: malformed line (expected {expected}); fix or remove that line")


def _score(text: str, path: str, line_number: int, expected: str) -> float:
    """A finite gold score, else a file:line error (``float`` also parses ``nan`` and ``inf``)."""
    try:
        score = float(text)
    except ValueError:
        raise _malformed(path, line_number, expected) from None
    if not math.isfinite(score):
        raise _malformed(path, line_number, f"{expected}; got {text.strip()!r}, not a finite number")
    return score


def _non_empty(pairs: StsPairs, path: str) -> StsPairs:
    if not len(pairs):
        raise UsageError(f"{path} holds no sentence pairs; pass a complete SentEval-layout file")
    return pairs


def read_sts_year_subset(directory: str, subset: str) -> StsPairs:
    """One SemEval STS subset: pairs from ``STS.input``, scores from ``STS.gs``, empty-gold pairs dropped."""
    input_path = os.path.join(directory, f"STS.input.{subset}.txt")
    gold_path = os.path.join(directory, f"STS.gs.{subset}.txt")
    _require_file(input_path, "STS input")
    _require_file(gold_path, "STS gold")
    with open(input_path, encoding="utf-8") as handle:
        inputs = handle.read().splitlines()
    with open(gold_path, encoding="utf-8") as handle:
        golds = handle.read().splitlines()
    if len(inputs) != len(golds):
        raise UsageError(
            f"{input_path} has {len(inputs)} lines but {gold_path} has {len(golds)}; the files must be parallel"
        )
    pairs = StsPairs([], [], [], (input_path, gold_path))
    for line_number, (line, gold) in enumerate(zip(inputs, golds, strict=True), start=1):
        if not gold.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise _malformed(input_path, line_number, "sentence1<TAB>sentence2")
        score = _score(gold, gold_path, line_number, "a number or an empty line")
        pairs.sentences1.append(fields[0])
        pairs.sentences2.append(fields[1])
        pairs.scores.append(score)
    return _non_empty(pairs, input_path)


def read_stsb_file(path: str) -> StsPairs:
    """Parse ``STSBenchmark/sts-*.csv``: split on tabs (some lines carry extra fields; no CSV parser)."""
    _require_file(path, "STS-B")
    pairs = StsPairs([], [], [], (path,))
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            expected = ">= 7 tab-separated fields, a numeric score in field 5"
            if len(fields) < 7:
                raise _malformed(path, line_number, expected)
            pairs.scores.append(_score(fields[4], path, line_number, expected))
            pairs.sentences1.append(fields[5])
            pairs.sentences2.append(fields[6])
    return _non_empty(pairs, path)


def read_sick_file(path: str) -> StsPairs:
    """Parse ``SICK_*.txt``: a header naming sentence_A, sentence_B and relatedness_score columns."""
    _require_file(path, "SICK")
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        try:
            columns = [header.index(name) for name in ("sentence_A", "sentence_B", "relatedness_score")]
        except ValueError:
            raise _malformed(path, 1, "a header with sentence_A, sentence_B, relatedness_score") from None
        pairs = StsPairs([], [], [], (path,))
        for line_number, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            expected = "tab-separated fields under the header"
            if len(fields) <= max(columns):
                raise _malformed(path, line_number, expected)
            sentence1, sentence2, score = (fields[i] for i in columns)
            pairs.scores.append(_score(score, path, line_number, expected))
            pairs.sentences1.append(sentence1)
            pairs.sentences2.append(sentence2)
    return _non_empty(pairs, path)


def load_task(task: str, split: str = "test", senteval_dir: str | None = None) -> dict[str, StsPairs]:
    """The pairs of ``task`` (one of :data:`TASKS`) by subset: STS12-16 give one entry per SemEval subset
    (test only), STS-B and SICK-R one entry named after the task. ``senteval_dir=None`` reads the Hub copies.
    """
    if task not in TASKS:
        raise UsageError(f"unknown STS task {task!r}; choose from {', '.join(TASKS)}")
    if senteval_dir is None:
        return {task: _load_hub_copy(task, split)}
    if task in STS_YEARS:
        if split != "test":
            raise UsageError(f"{task} has only a test split (asked for {split!r})")
        folder, subsets = STS_YEARS[task]
        directory = os.path.join(senteval_dir, "STS", folder)
        if not os.path.isdir(directory):
            raise UsageError(f"task directory {directory!r} does not exist; senteval_dir must hold STS/{folder}/")
        return {subset: read_sts_year_subset(directory, subset) for subset in subsets}
    files = STSB_FILES if task == "stsb" else SICK_FILES
    if split not in files:
        raise UsageError(f"{task} split must be one of {sorted(files)}, got {split!r}")
    if task == "stsb":
        return {task: read_stsb_file(os.path.join(senteval_dir, "STS", "STSBenchmark", files[split]))}
    return {task: read_sick_file(os.path.join(senteval_dir, "SICK", files[split]))}


def load_stsb(split: str, senteval_dir: str | None = None) -> StsPairs:
    """STS-B ``split`` (train/dev/test) from a SentEval-layout directory, or the Hub copy when ``None``."""
    return load_task("stsb", split, senteval_dir)["stsb"]


def _load_hub_copy(task: str, split: str) -> StsPairs:
    """The Hub copy as one subset (STS12-16 subsets are not labelled there: "all" only)."""
    dataset_id, splits = HUB_COPIES[task]
    if split not in splits:
        raise UsageError(f"the Hub copy of {task} has splits {sorted(splits)}, not {split!r}; use senteval_dir")
    try:
        hub = datasets.load_dataset(dataset_id, split=splits[split])
    except Exception as err:  # offline, missing repo, auth: all mean "use local files"
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UsageError(
            f"cannot read the Hub copy {dataset_id} ({first_line}); pass --senteval_dir with a SentEval-layout "
            "directory"
        ) from err
    return StsPairs(
        list(hub["sentence1"]), list(hub["sentence2"]), [float(s) for s in hub["score"]], (f"hf:{dataset_id}",)
    )


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
