"""mixcse-mine: each filter against a brute-force reference, duplicates, chunking, sentence-transformers' own miner,
every format in and out, every refusal before writing, and training on what it writes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import torch

from mixcse_hf.cli.mine import main
from mixcse_hf.models.encoder import SentenceEncoder
from mixcse_hf.training.data import load_corpus
from tests.conftest import REPO_ROOT, SENTENCES, train_tiny

POOLER = ["--pooler", "avg"]
"""The tiny random BERT's [CLS] vectors all point one way (cosines above 0.99998); averaged tokens spread out."""
EXTRA = [f"{a.removesuffix(' .')} and {b}" for a, b in zip(SENTENCES, SENTENCES[3:], strict=False)]
PAIRS = [(s, f"{s.removesuffix(' .')} today .") for s in SENTENCES + EXTRA]
"""21 (anchor, positive) pairs: each positive the anchor with a word added."""
CORPUS = ["a guitar is being played by a man .", "the dog sleeps .", "an onion is sliced by a woman ."]


def key(text: str) -> str:
    """The duplicate key, written again here: NFKC, case folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def reference(
    encoder: SentenceEncoder,
    pairs: list[tuple[str, str]],
    corpus: list[str] = (),
    num_negatives: int = 1,
    range_min: int = 0,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
) -> list[tuple[str, str, str]]:
    """Brute force: every score, every filter by its definition, a stable sort per row."""
    first: dict[str, str] = {}
    for text in [p for _, p in pairs] + list(corpus):
        first.setdefault(key(text), text)
    candidates = list(first.values())
    anchors = encoder.encode([a for a, _ in pairs], normalize=True).double()
    embedded = encoder.encode(candidates, normalize=True).double()
    scores = (anchors @ embedded.T).tolist()
    place = {key(text): i for i, text in enumerate(candidates)}
    rows = []
    for i, (anchor, positive) in enumerate(pairs):
        own = {key(p) for a, p in pairs if key(a) == key(anchor)}
        p = min(scores[i][place[k]] for k in own)
        allowed = []
        for c, text in enumerate(candidates):
            s = scores[i][c]
            if key(text) in own or key(text) == key(anchor):
                continue
            if absolute_margin is not None and s + absolute_margin > p:
                continue
            if relative_margin is not None and s > p - abs(p) * relative_margin:
                continue
            if max_score is not None and s > max_score:
                continue
            if min_score is not None and s < min_score:
                continue
            allowed.append(c)
        ranked = sorted(allowed, key=lambda c, i=i: -scores[i][c])
        rows += [(anchor, positive, candidates[c]) for c in ranked[range_min : range_min + num_negatives]]
    return rows


def write_pairs(path: Path, pairs: list[tuple[str, str]], columns: tuple[str, str] = ("anchor", "positive")) -> Path:
    records = [dict(zip(columns, pair, strict=True)) for pair in pairs]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(records), encoding="utf-8")
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        with path.open("w", encoding="utf-8", newline="") as handle:
            quoting = csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL
            writer = csv.DictWriter(
                handle, fieldnames=list(columns), delimiter="\t" if path.suffix == ".tsv" else ",", quoting=quoting
            )
            writer.writeheader()
            writer.writerows(records)
    return path


def read_rows(path: Path) -> list[tuple[str, str, str]]:
    """OUTPUT as training reads it."""
    corpus = load_corpus(train_file=str(path))
    assert corpus.column_names == ["anchor", "positive", "negative"]
    return [(r["anchor"], r["positive"], r["negative"]) for r in corpus]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: str) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(tiny_model_dir, "avg")


@pytest.fixture
def pairs_csv(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "pairs.csv", PAIRS)


def run_mine(model: str, input_path: Path, output: Path, *flags: str) -> list[tuple[str, str, str]]:
    assert main([model, str(input_path), str(output), *POOLER, *flags]) == 0
    return read_rows(output)


def scores_of(encoder: SentenceEncoder) -> tuple[list[float], list[float]]:
    """Per pair: the positive's score and the best other candidate's (the unfiltered negative's)."""
    anchors = encoder.encode([a for a, _ in PAIRS], normalize=True)
    positives = encoder.encode([p for _, p in PAIRS], normalize=True)
    scores = anchors @ positives.T
    best = scores.clone().fill_diagonal_(-2).max(dim=1).values
    return scores.diagonal().tolist(), best.tolist()


def filter_cases(encoder: SentenceEncoder) -> dict[str, dict[str, float | int]]:
    """Filter values, taken from the scores, that remove some but not all of the unfiltered negatives."""
    positive, best = scores_of(encoder)
    gaps = sorted(p - b for p, b in zip(positive, best, strict=True))
    ratios = sorted((p - b) / abs(p) for p, b in zip(positive, best, strict=True))
    middle = len(gaps) // 2
    return {
        "none": {},
        "range_min": {"range_min": 2},
        "absolute_margin": {"absolute_margin": round(max(gaps[middle], 0.0), 6)},
        "relative_margin": {"relative_margin": round(max(ratios[middle], 0.0), 6)},
        "max_score": {"max_score": round(sorted(best)[middle], 6)},
        "min_score": {"num_negatives": 4, "min_score": round(sorted(best)[2], 6)},
        "all": {"num_negatives": 2, "range_min": 1, "relative_margin": 0.0, "max_score": round(max(best), 6)},
    }


@pytest.mark.parametrize(
    "case", ["none", "range_min", "absolute_margin", "relative_margin", "max_score", "min_score", "all"]
)
def test_each_filter_removes_what_it_should(
    tiny_model_dir: str, encoder: SentenceEncoder, pairs_csv: Path, tmp_path: Path, case: str
) -> None:
    options = filter_cases(encoder)[case]
    flags = [item for name, value in options.items() for item in (f"--{name}", str(value))]
    mined = run_mine(tiny_model_dir, pairs_csv, tmp_path / "mined.csv", *flags, "--chunk_size", "5")
    assert mined == reference(encoder, PAIRS, **options)
    if case != "none":  # the filter changed what is chosen
        unfiltered = {name: value for name, value in options.items() if name == "num_negatives"}
        assert mined != reference(encoder, PAIRS, **unfiltered)


def test_duplicates_are_never_negatives(tiny_model_dir: str, encoder: SentenceEncoder, tmp_path: Path) -> None:
    """Variants of an anchor (case, spacing, a compatibility character) in the corpus and among other rows'
    positives, and an anchor with two positives: none is chosen, though they score highest."""
    pairs = [*PAIRS, (SENTENCES[1], "a woman cuts an onion ."), ("THE  CAT sits on the mat .", SENTENCES[2])]
    corpus = [*CORPUS, "A MAN is  playing a guitar .", "a man is playing a guitar\u3000.", "", SENTENCES[3].upper()]
    (tmp_path / "corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    path = write_pairs(tmp_path / "pairs.csv", pairs)
    mined = run_mine(
        tiny_model_dir, path, tmp_path / "mined.csv", "--corpus", str(tmp_path / "corpus.txt"), "--num_negatives", "3"
    )
    assert mined == reference(encoder, pairs, [text for text in corpus if text], num_negatives=3)
    for anchor, _, negative in mined:
        own = {key(p) for a, p in pairs if key(a) == key(anchor)}
        assert key(negative) not in own | {key(anchor)}
    assert len({key(n) for _, _, n in mined}) == len({n for _, _, n in mined})  # one text per key
    # without the duplicate filter the anchor's own variants would come first
    anchors = encoder.encode([SENTENCES[0]], normalize=True)
    variants = encoder.encode(["A MAN is  playing a guitar .", "a man is playing a guitar\u3000."], normalize=True)
    others = encoder.encode([n for a, _, n in mined if a == SENTENCES[0]], normalize=True)
    assert (anchors @ variants.T).min() > (anchors @ others.T).max()


def test_scores_are_the_rows_own_and_the_anchors_lowest(
    tiny_model_dir: str, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    """positive_score is the score of the row's own positive; an anchor on several rows is filtered by the lowest
    of its positives' scores, written as min_positive_score."""
    pairs = [*PAIRS, (SENTENCES[1], "a woman cuts an onion ."), (SENTENCES[1], "someone is slicing a vegetable .")]
    path = write_pairs(tmp_path / "pairs.csv", pairs)
    output = tmp_path / "mined.jsonl"
    run_mine(tiny_model_dir, path, output, "--scores")
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(pairs)

    def score(anchor: str, positive: str) -> float:
        return float(encoder.encode([anchor], normalize=True) @ encoder.encode([positive], normalize=True).T)

    for row in rows:
        own = [p for a, p in pairs if a == row["anchor"]]
        assert row["positive_score"] == pytest.approx(score(row["anchor"], row["positive"]), abs=1e-5)
        assert row["min_positive_score"] == pytest.approx(min(score(row["anchor"], p) for p in own), abs=1e-5)
    differ = [row for row in rows if row["positive_score"] != pytest.approx(row["min_positive_score"], abs=1e-5)]
    assert {row["anchor"] for row in differ} == {SENTENCES[1]}


def test_chunked_equals_unchunked(tiny_model_dir: str, pairs_csv: Path, tmp_path: Path) -> None:
    flags = ["--num_negatives", "3", "--range_min", "1", "--scores"]
    whole = run_mine(tiny_model_dir, pairs_csv, tmp_path / "whole.jsonl", *flags, "--chunk_size", "1000")
    for size in ("1", "4"):
        chunked = run_mine(tiny_model_dir, pairs_csv, tmp_path / f"chunk{size}.jsonl", *flags, "--chunk_size", size)
        assert chunked == whole
    rows = [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text(encoding="utf-8").splitlines()]
    chunked_rows = [json.loads(line) for line in (tmp_path / "chunk4.jsonl").read_text(encoding="utf-8").splitlines()]
    for row, other in zip(rows, chunked_rows, strict=True):
        assert row["negative_score"] == pytest.approx(other["negative_score"], abs=1e-6)
        assert row["positive_score"] >= -1 and row["negative_score"] <= 1
    half = run_mine(tiny_model_dir, pairs_csv, tmp_path / "half.jsonl", *flags, "--store_dtype", "float16")
    assert len(half) == len(whole)


def test_same_negatives_as_sentence_transformers_miner(
    tiny_model_dir: str, encoder: SentenceEncoder, pairs_csv: Path, tmp_path: Path
) -> None:
    """sentence-transformers' mine_hard_negatives, given a SentenceTransformer-like view of the same encoder and a
    range_max over the whole corpus, picks the same negatives under the same filters (data without duplicates)."""
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    class SentenceTransformerView:
        device = torch.device("cpu")

        def encode_document(self, sentences: list[str], **_: object) -> object:
            return encoder.encode(sentences, normalize=True).numpy()

        encode_query = encode_document

        def similarity(self, a: object, b: object) -> torch.Tensor:
            return torch.as_tensor(a) @ torch.as_tensor(b).T

        def similarity_pairwise(self, a: object, b: object) -> torch.Tensor:
            return (torch.as_tensor(a) * torch.as_tensor(b)).sum(-1)

    margin = filter_cases(encoder)["relative_margin"]["relative_margin"]
    options = {"num_negatives": 2, "range_min": 1, "relative_margin": margin}
    dataset = datasets.Dataset.from_dict({"anchor": [a for a, _ in PAIRS], "positive": [p for _, p in PAIRS]})
    theirs = mine_hard_negatives(
        dataset, SentenceTransformerView(), corpus=CORPUS, range_max=len(PAIRS) + len(CORPUS), verbose=False, **options
    )
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    flags = [item for name, value in options.items() for item in (f"--{name}", str(value))]
    corpus = ["--corpus", str(tmp_path / "corpus.txt")]
    ours = run_mine(tiny_model_dir, pairs_csv, tmp_path / "mined.csv", *flags, *corpus)
    assert ours == [(r["anchor"], r["positive"], r["negative"]) for r in theirs]
    assert ours != reference(encoder, PAIRS, CORPUS, num_negatives=2, range_min=1)  # the margin mattered


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_every_input_format(tiny_model_dir: str, tmp_path: Path, extension: str) -> None:
    """SimCSE's column names in, the mined rows out (as training reads them) the same from every format."""
    path = write_pairs(tmp_path / f"pairs{extension}", PAIRS, ("sent0", "sent1"))
    expected = run_mine(tiny_model_dir, write_pairs(tmp_path / "ref.csv", PAIRS), tmp_path / "ref.jsonl")
    assert run_mine(tiny_model_dir, path, tmp_path / "mined.jsonl") == expected


TRICKY = [*PAIRS[:8], ('a "quoted", comma , café .', "naïve text, with 'quotes' ."), ("NA", "null")]


@pytest.mark.parametrize("extension", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_every_output_format_round_trips(
    tiny_model_dir: str, encoder: SentenceEncoder, tmp_path: Path, extension: str
) -> None:
    path = write_pairs(tmp_path / "pairs.jsonl", TRICKY)
    output = tmp_path / "out" / f"mined{extension}"
    output.parent.mkdir()
    assert run_mine(tiny_model_dir, path, output, "--num_negatives", "2") == reference(encoder, TRICKY, num_negatives=2)
    assert [p.name for p in output.parent.iterdir()] == [output.name]  # no temporary file or folder left


def test_text_columns_and_blank_rows(tiny_model_dir: str, encoder: SentenceEncoder, tmp_path: Path) -> None:
    rows = [{"q": a, "a": p, "other": "x"} for a, p in PAIRS] + [{"q": " ", "a": "x", "other": "y"}]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    mined = run_mine(tiny_model_dir, path, tmp_path / "mined.csv", "--text_columns", "q", "a")
    assert mined == reference(encoder, PAIRS)


def test_trains_on_mined_triplets(tiny_model_dir: str, pairs_csv: Path, tmp_path: Path) -> None:
    """run_mixcse.py takes the output as it is (columns detected), mixing the mined hard negatives."""
    mined = tmp_path / "mined.csv"
    run_mine(tiny_model_dir, pairs_csv, mined, "--num_negatives", "2", "--scores")
    run = train_tiny(tiny_model_dir, mined, tmp_path / "run", "--mixed_hard_negative", "true", "--max_seq_length", "32")
    assert (run / "checkpoint-2").is_dir()


def test_sentence_transformers_loss_takes_the_output(tiny_model_dir: str, pairs_csv: Path, tmp_path: Path) -> None:
    import datasets
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from mixcse_hf.losses.sentence_transformers import MixCSELoss

    mined = tmp_path / "mined.parquet"
    run_mine(tiny_model_dir, pairs_csv, mined, "--scores")
    dataset = datasets.load_dataset("parquet", data_files=str(mined), split="train").select_columns(
        ["anchor", "positive", "negative"]
    )
    model = SentenceTransformer(modules=[Transformer(tiny_model_dir), Pooling(32, "mean")], device="cpu")
    loss = MixCSELoss(model, mixed_hard_negative=True)
    features = [model.tokenize(dataset[column][:6]) for column in dataset.column_names]
    value = loss(features, None)
    value.backward()
    assert torch.isfinite(value)


# ---- refusals: one line on stderr, exit 2, nothing written --------------------------------------------------------


def bad_cases(tmp_path: Path, pairs_csv: Path, model: str) -> dict[str, tuple[list[str], str]]:
    out = tmp_path / "out"
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("anchor,positive\n", encoding="utf-8")
    (tmp_path / "blank.csv").write_text('anchor,positive\n" ",x\n', encoding="utf-8")
    (tmp_path / "latin1.csv").write_bytes("anchor,positive\ncaf\xe9,x\n".encode("latin-1"))
    (tmp_path / "qa.csv").write_text("q,a\nx,y\n", encoding="utf-8")
    (tmp_path / "text.csv").write_text("text\nx\n", encoding="utf-8")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    (tmp_path / "tab.csv").write_text("anchor,positive\na\tb,c\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (out / "exists.csv").write_text("keep\n", encoding="utf-8")
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    pairs, csv_out = str(pairs_csv), str(out / "mined.csv")
    ok = [model, pairs, csv_out]
    return {
        "missing input": ([model, str(tmp_path / "nope.csv"), csv_out], "does not exist"),
        "input is a directory": ([model, str(out / "dir.csv"), csv_out], "is not a file"),
        "unknown input format": ([model, str(tmp_path / "empty.txt"), csv_out], "unsupported extension '.txt'"),
        "empty input": ([model, str(tmp_path / "empty.csv"), csv_out], "is empty"),
        "no rows": ([model, str(tmp_path / "header.csv"), csv_out], "but no rows"),
        "only blank rows": ([model, str(tmp_path / "blank.csv"), csv_out], "no (anchor, positive) rows"),
        "not UTF-8": ([model, str(tmp_path / "latin1.csv"), csv_out], "not valid UTF-8 (line 2"),
        "unknown columns": ([model, str(tmp_path / "qa.csv"), csv_out], "cannot tell the training columns"),
        "one text column": ([model, str(tmp_path / "text.csv"), csv_out], "no (anchor, positive) columns"),
        "missing named column": ([*ok, "--text_columns", "anchor", "answer"], "no column 'answer'"),
        "unreadable parquet": ([model, str(tmp_path / "broken.parquet"), csv_out], "not a readable parquet file"),
        "unknown output format": ([model, pairs, str(out / "mined.txt")], "unsupported extension '.txt'"),
        "output exists": ([model, pairs, str(out / "exists.csv")], "exists; pass --overwrite"),
        "output directory missing": ([model, pairs, str(out / "no" / "mined.csv")], "does not exist; create it"),
        "output is input": ([model, pairs, pairs, "--overwrite"], "is INPUT"),
        "tab in a TSV output": ([model, str(tmp_path / "tab.csv"), str(out / "m.tsv")], "TSV OUTPUT"),
        "num_negatives": ([*ok, "--num_negatives", "0"], "--num_negatives must be >= 1"),
        "range_min": ([*ok, "--range_min", "-1"], "--range_min must be >= 0"),
        "relative_margin": ([*ok, "--relative_margin", "1.5"], "--relative_margin must be a number from 0 to 1"),
        "absolute_margin nan": ([*ok, "--absolute_margin", "nan"], "--absolute_margin must be a number"),
        "max_score": ([*ok, "--max_score", "2"], "--max_score must be a number from -1 to 1"),
        "min above max": ([*ok, "--min_score", "0.5", "--max_score", "0.4"], "must be below --max_score"),
        "chunk_size": ([*ok, "--chunk_size", "0"], "--chunk_size must be >= 1"),
        "missing corpus": ([*ok, "--corpus", str(tmp_path / "nope.txt")], "--corpus"),
        "empty corpus": ([*ok, "--corpus", str(tmp_path / "empty.txt")], "is empty"),
        "corpus not UTF-8": ([*ok, "--corpus", str(tmp_path / "latin1.txt")], "not valid UTF-8 (line 1"),
        "work_dir is a file": ([*ok, "--work_dir", str(tmp_path / "a_file")], "--work_dir"),
        "bad model": ([str(tmp_path / "no-model"), pairs, csv_out], "cannot load model_name_or_path"),
        "bad pooler": ([*ok, "--pooler", "max"], "pooler_type must be one of"),
    }


BAD_CASES = [
    "missing input",
    "input is a directory",
    "unknown input format",
    "empty input",
    "no rows",
    "only blank rows",
    "not UTF-8",
    "unknown columns",
    "one text column",
    "missing named column",
    "unreadable parquet",
    "unknown output format",
    "output exists",
    "output directory missing",
    "output is input",
    "tab in a TSV output",
    "num_negatives",
    "range_min",
    "relative_margin",
    "absolute_margin nan",
    "max_score",
    "min above max",
    "chunk_size",
    "missing corpus",
    "empty corpus",
    "corpus not UTF-8",
    "work_dir is a file",
    "bad model",
    "bad pooler",
]


KILLED_MINE = """
import os, signal, sys
from mixcse_hf.cli import mine


def killed_while_writing(path, rows, scores):
    with open(path, "w") as handle:
        handle.write(repr(next(iter(rows))))  # the candidates are embedded by now
    os.kill(os.getpid(), signal.SIGKILL)


mine.WRITERS[".csv"] = killed_while_writing
mine.main(sys.argv[1:])
"""


def test_what_a_killed_run_left_is_removed_by_the_next_run(
    tiny_model_dir: str, pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed while writing leaves its partial OUTPUT and its candidate folder: the next run removes both
    (a note each) and keeps those of a run still going."""
    out, output = tmp_path / "out", tmp_path / "out" / "mined.csv"
    out.mkdir()
    argv = [tiny_model_dir, str(pairs_csv), str(output), *POOLER]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILLED_MINE, *argv], env=environment, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    left = sorted(out.iterdir())
    assert [path.suffix for path in left] == [".partial", ".candidates"] and left[1].is_dir()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid = left[1].name.rsplit(".", 2)[1]  # .mixcse-mine.HOST.PID.candidates
        live = out / left[1].name.replace(f".{pid}.", f".{running.pid}.")
        live.mkdir()
        assert main(argv) == 0
    finally:
        running.kill()
        running.wait()
    assert sorted(path.name for path in out.iterdir()) == sorted([live.name, "mined.csv"])
    err = capsys.readouterr().err
    assert all(f"removed {path}, left by a run that was killed" in err for path in left)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_and_writes_nothing(
    tiny_model_dir: str, pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "dir.csv").mkdir()
    argv, message = bad_cases(tmp_path, pairs_csv, tiny_model_dir)[case]
    before = sorted(os.listdir(out)), pairs_csv.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert (sorted(os.listdir(out)), pairs_csv.read_bytes()) == before
    assert (out / "exists.csv").read_text(encoding="utf-8") == "keep\n"


def test_bad_case_list_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert sorted(bad_cases(tmp_path, tmp_path / "p.csv", "m")) == sorted(BAD_CASES)
