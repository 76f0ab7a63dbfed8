"""Mine hard negatives for (anchor, positive) pairs: write (anchor, positive, negative) training rows.

    mixcse-mine MODEL INPUT OUTPUT [--text_columns ANCHOR POSITIVE] [--corpus FILE] [--num_negatives 1]
        [--range_min 0] [--absolute_margin M] [--relative_margin R] [--max_score S] [--min_score S]
        [--chunk_size 4096] [--store_dtype float32|float16] [--work_dir DIR] [--batch_size 64] [--pooler P]
        [--dtype float32|bfloat16|float16] [--max_seq_length L] [--device D] [--backend torch|onnx|openvino]
        [--file_name F] [--scores] [--progress] [--overwrite]

(also ``python -m mixcse_hf.cli.mine``).

MODEL: any model mixcse-encode takes (a mixcse_hf checkpoint, a plain HF encoder, a sentence-transformers
directory, or a Hub id such as sentence-transformers/all-MiniLM-L6-v2, offline from its installed package), with
the same --backend and --file_name.

INPUT: a table that training reads (.csv, .tsv, .jsonl, .json, .parquet), read as training reads it, with the
columns training detects (sent0/sent1 or anchor/positive; a third column is replaced) or --text_columns A P.
Rows with a blank anchor or positive are skipped, as training skips them.

Candidates: the positives of all rows, plus the sentences of --corpus (a text file, one sentence a line, blank
lines skipped), each distinct text once. Filters (sentence-transformers' mine_hard_negatives definitions, score =
cosine similarity, p = the positive's score; an anchor on several rows: the lowest of its positives' scores): a
candidate equal to the anchor or a positive of that anchor (after Unicode NFKC, case folding and whitespace
collapsing) is never a negative; --absolute_margin M removes s + M > p;
--relative_margin R removes s > p - |p| R; --max_score / --min_score remove scores above / below; --range_min K
skips the K best candidates left; the next --num_negatives are the negatives, one output row each, best first.
A row with none left is not written (the summary counts it).

OUTPUT: anchor, positive, negative columns in .csv, .tsv, .jsonl, .json or .parquet, which run_mixcse.py
(--train_file) and the sentence-transformers loss read as they are. --scores adds positive_score (the row's own
positive), negative_score and min_positive_score (the lowest of the anchor's positives: p above, for an anchor on
several rows).

Memory: candidate embeddings go to a temporary folder (--work_dir, default beside OUTPUT) and --chunk_size anchors
are scored against --chunk_size candidates at a time, so memory follows the chunk size, not the corpus size.
Every input is checked (and read once) before anything is written; OUTPUT is written under a temporary name and
renamed once complete. A killed run cannot clean up: its hidden .OUTPUT.HOST.PID.partial and its candidate folder
.mixcse-mine.HOST.PID.candidates are removed by the next run (with a note) for the same OUTPUT and work folder. A
progress bar on stderr (a terminal, or --progress), and a summary line at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mixcse_hf.cli import encode
from mixcse_hf.cli.encode import (
    DTYPES,
    add_backend_arguments,
    check_input,
    own_transient_name,
    remove_stale,
    replaced_on_success,
)
from mixcse_hf.errors import UsageError, run_cli
from mixcse_hf.output_files import check_output_dir
from mixcse_hf.text_files import TABLE_FORMATS, batched, check_text_file, is_blank

if TYPE_CHECKING:  # datasets, torch and the model stack load only once the arguments are checked
    import datasets

    from mixcse_hf.evaluation.mining import MinedRow, NegativeFilters

STORE_DTYPES = ("float32", "float16")
"""How candidate embeddings are kept on disk (:class:`mixcse_hf.evaluation.mining.CandidateStore`); scores are
computed in float32 either way."""
TABLE_EXTENSIONS = tuple(TABLE_FORMATS)
"""The table formats training reads, in and out."""
COLUMNS = ("anchor", "positive", "negative")
SCORE_COLUMNS = ("positive_score", "negative_score", "min_positive_score")
"""With --scores: the row's positive's score, its negative's, and the lowest of the anchor's positives' scores
(an anchor on several rows), which the filters compare with."""
WORK_PREFIX, WORK_SUFFIX = ".mixcse-mine", ".candidates"
"""The candidate folder's name: ``.mixcse-mine.HOST.PID.candidates`` (:func:`candidate_folder`)."""
TSV_FORBIDDEN = ("\t", "\n", "\r")
"""Characters a TSV field cannot hold: training reads TSV without quoting."""


def output_columns(scores: bool) -> tuple[str, ...]:
    return COLUMNS + SCORE_COLUMNS * scores


def row_values(row: MinedRow, scores: bool) -> list[str | float]:
    values: list[str | float] = [row.anchor, row.positive, row.negative]
    return [*values, row.positive_score, row.negative_score, row.min_positive_score] if scores else values


def row_record(row: MinedRow, scores: bool) -> dict[str, str | float]:
    return dict(zip(output_columns(scores), row_values(row, scores), strict=True))


def write_csv(path: str, rows: Iterable[MinedRow], scores: bool, delimiter: str = ",") -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(output_columns(scores))
        for row in rows:
            writer.writerow(row_values(row, scores))


def write_tsv(path: str, rows: Iterable[MinedRow], scores: bool) -> None:
    """Fields as they are, no quoting (as training reads TSV); texts were checked free of tabs and line ends."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(output_columns(scores)) + "\n")
        for row in rows:
            handle.write("\t".join(str(value) for value in row_values(row, scores)) + "\n")


def write_jsonl(path: str, rows: Iterable[MinedRow], scores: bool) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row_record(row, scores), ensure_ascii=False) + "\n")


def write_json(path: str, rows: Iterable[MinedRow], scores: bool) -> None:
    """One JSON array of row objects, streamed one object a line."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        for number, row in enumerate(rows):
            handle.write(("," if number else "") + "\n" + json.dumps(row_record(row, scores), ensure_ascii=False))
        handle.write("\n]\n")


def write_parquet(path: str, rows: Iterable[MinedRow], scores: bool, group_rows: int = 10000) -> None:
    """String columns (float64 scores), a row group every ``group_rows`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [(name, pa.float64() if name in SCORE_COLUMNS else pa.string()) for name in output_columns(scores)]
    )
    with pq.ParquetWriter(path, schema) as writer:
        written = False
        for records in batched((row_record(row, scores) for row in rows), group_rows):
            writer.write_table(pa.Table.from_pylist(records, schema))
            written = True
        if not written:  # no rows: one empty group, so that the file has the columns
            writer.write_table(pa.Table.from_pylist([], schema))


WRITERS: dict[str, Callable[[str, Iterable[MinedRow], bool], None]] = {
    ".csv": write_csv,
    ".tsv": write_tsv,
    ".jsonl": write_jsonl,
    ".json": write_json,
    ".parquet": write_parquet,
}


def check_output(args: argparse.Namespace) -> str:
    """OUTPUT's extension, once OUTPUT is not INPUT or --corpus and passes mixcse-encode's checks
    (:func:`mixcse_hf.cli.encode.check_output`)."""
    for name, path in (("INPUT", args.input), ("--corpus", args.corpus)):
        if path is not None and os.path.abspath(path) == os.path.abspath(args.output):
            raise UsageError(f"OUTPUT {args.output!r} is {name}; write the mined rows to another file")
    return encode.check_output(args.output, args.overwrite, WRITERS)


def load_pairs(args: argparse.Namespace) -> tuple[datasets.Dataset, list[str]]:
    """INPUT as training reads it, and its anchor and positive columns (:func:`detect_columns`)."""
    import datasets

    from mixcse_hf.training.data import detect_columns, load_table

    table = load_table(args.input, "INPUT")
    detected = detect_columns(table.column_names, args.text_columns)
    if len(detected) < 2:
        raise UsageError(
            f"INPUT {args.input!r} has no (anchor, positive) columns (columns: {table.column_names}): expected "
            "sent0, sent1 or anchor, positive; name yours with --text_columns ANCHOR POSITIVE"
        )
    if len(table) == 0:
        raise UsageError(f"INPUT {args.input!r} holds no rows")
    for column in detected[:2]:  # as training reads them: numbers and booleans as text, nothing else
        feature = table.features[column]
        if not isinstance(feature, datasets.Value):
            raise UsageError(f"INPUT {args.input!r}: column {column!r} holds {feature}, not text; pick text columns")
        if feature.dtype not in ("string", "large_string"):
            table = table.cast_column(column, datasets.Value("string"))
    return table, detected[:2]


def pair_reader(table: datasets.Dataset, columns: list[str]) -> Callable[[], Iterator[tuple[str, str]]]:
    """A fresh iterator over the (anchor, positive) rows at each call, rows with a blank field skipped."""
    anchor_column, positive_column = columns

    def pairs() -> Iterator[tuple[str, str]]:
        for batch in table.select_columns(columns).iter(batch_size=1000):
            for anchor, positive in zip(batch[anchor_column], batch[positive_column], strict=True):
                if not (is_blank(anchor) or is_blank(positive)):
                    yield anchor, positive

    return pairs


def corpus_reader(path: str | None) -> Callable[[], Iterator[str]] | None:
    if path is None:
        return None
    from mixcse_hf.text_files import read_lines

    def sentences() -> Iterator[str]:
        for _, text in read_lines(path, "--corpus"):
            if not is_blank(text):
                yield text

    return sentences


def tsv_check(path: str, input_path: str) -> Callable[[str, str], None]:
    def check(text: str, where: str) -> None:
        if any(character in text for character in TSV_FORBIDDEN):
            source = "--corpus" if where.startswith("corpus") else f"INPUT {input_path!r}"
            raise UsageError(
                f"{source} {where} holds a tab or line break, which a TSV OUTPUT {path!r} cannot hold (training "
                "reads TSV unquoted); write .csv, .jsonl, .json or .parquet instead"
            )

    return check


def build_parser() -> argparse.ArgumentParser:
    """The command line (help: this module's docstring)."""
    parser = argparse.ArgumentParser(
        prog="mixcse-mine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or Hub id")
    parser.add_argument("input", metavar="INPUT", help=f"(anchor, positive) pairs: {', '.join(TABLE_EXTENSIONS)}")
    parser.add_argument("output", metavar="OUTPUT", help=f"(anchor, positive, negative) rows: {', '.join(WRITERS)}")
    parser.add_argument(
        "--text_columns", nargs=2, metavar=("ANCHOR", "POSITIVE"), help="INPUT's columns; default: as training detects"
    )
    parser.add_argument("--corpus", help="more candidates: a text file, one sentence a line")
    parser.add_argument("--num_negatives", type=int, default=1, help="negatives (output rows) per pair (default 1)")
    parser.add_argument("--range_min", type=int, default=0, help="skip this many best candidates left (default 0)")
    parser.add_argument("--absolute_margin", type=float, help="remove candidates scoring above positive - M")
    parser.add_argument("--relative_margin", type=float, help="remove candidates scoring above positive - |positive| R")
    parser.add_argument("--max_score", type=float, help="remove candidates scoring above this cosine")
    parser.add_argument("--min_score", type=float, help="remove candidates scoring below this cosine")
    parser.add_argument(
        "--chunk_size", type=int, default=4096, help="anchors and candidates scored at a time (default 4096)"
    )
    parser.add_argument(
        "--store_dtype",
        choices=STORE_DTYPES,
        default="float32",
        help="candidate embeddings on disk; float16 halves the files (default float32)",
    )
    parser.add_argument("--work_dir", help="where candidate embeddings stay while mining; default beside OUTPUT")
    parser.add_argument("--batch_size", type=int, default=64, help="sentences per forward pass (default 64)")
    parser.add_argument("--pooler", help="a pooler_type; default: the model's own (as mixcse-encode)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype (default float32)")
    parser.add_argument("--max_seq_length", type=int, help="truncation in tokens; default: the model's")
    parser.add_argument("--device", help="torch device; default: an accelerator if present, else cpu")
    add_backend_arguments(parser)
    parser.add_argument(
        "--scores", action="store_true", help="also write positive_score, negative_score and min_positive_score columns"
    )
    parser.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is no terminal")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    return parser


def check_sizes(args: argparse.Namespace) -> None:
    for name in ("batch_size", "chunk_size", "max_seq_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")


def filters_of(args: argparse.Namespace) -> NegativeFilters:
    from mixcse_hf.evaluation.mining import NegativeFilters

    filters = NegativeFilters(
        num_negatives=args.num_negatives,
        range_min=args.range_min,
        absolute_margin=args.absolute_margin,
        relative_margin=args.relative_margin,
        max_score=args.max_score,
        min_score=args.min_score,
    )
    filters.check()
    return filters


@contextmanager
def candidate_folder(parent: str) -> Iterator[str]:
    """The hidden folder in ``parent`` where candidate embeddings stay while mining, named by this machine and
    process and removed when mining ends; those that killed runs left in ``parent`` are removed first."""
    remove_stale(parent, WORK_PREFIX, WORK_SUFFIX)
    path = os.path.join(parent, own_transient_name(WORK_PREFIX, WORK_SUFFIX))
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def mine_command(argv: list[str]) -> None:
    """Check everything, read the inputs once, load MODEL, then mine into OUTPUT; a summary on stderr."""
    args = build_parser().parse_args(argv)
    check_sizes(args)
    check_input(args.input, TABLE_EXTENSIONS)
    write = WRITERS[check_output(args)]
    if args.corpus is not None:
        check_text_file(args.corpus, "--corpus")
    if args.work_dir is not None:
        check_output_dir(args.work_dir, "--work_dir")
    filters = filters_of(args)
    from tqdm.auto import tqdm

    from mixcse_hf.evaluation.mining import MiningStats, index_inputs, mine
    from mixcse_hf.models.backends import check_backend_options, load_backend_encoder, torch_only_options

    check_backend_options(
        args.model, args.backend, args.file_name, args.pooler, torch_only_options(args.dtype, args.device)
    )
    encoder = load_backend_encoder(
        args.model, args.backend, args.file_name, args.pooler, args.dtype, args.device, args.max_seq_length
    )
    table, columns = load_pairs(args)
    check_text = tsv_check(args.output, args.input) if args.output.lower().endswith(".tsv") else None
    index = index_inputs(pair_reader(table, columns), corpus_reader(args.corpus), check_text, f"INPUT {args.input!r}")
    stats = MiningStats()
    start = time.perf_counter()
    work_parent = args.work_dir or os.path.dirname(os.path.abspath(args.output))
    if args.work_dir is not None:
        os.makedirs(args.work_dir, exist_ok=True)
    show = args.progress or sys.stderr.isatty()
    total = index.candidates + index.rows
    with (
        tqdm(total=total, unit="sentence", desc="Mining", disable=not show, file=sys.stderr) as progress,
        candidate_folder(work_parent) as work_dir,
        replaced_on_success(args.output) as temporary,
    ):
        sizes = {"chunk_size": args.chunk_size, "batch_size": args.batch_size, "store_dtype": args.store_dtype}
        rows = mine(encoder, index, filters, work_dir, **sizes, on_batch=progress.update, stats=stats)
        write(temporary, rows, args.scores)
    seconds = time.perf_counter() - start
    skipped = f"; {stats.rows_without} without any negative left out" if stats.rows_without else ""
    short = f", {stats.rows_short} with fewer than {filters.num_negatives}" if filters.num_negatives > 1 else ""
    print(
        f"mined {stats.negatives} negative{'s' * (stats.negatives != 1)} for {stats.rows} pairs from "
        f"{stats.candidates} candidates{short}{skipped} in {seconds:.1f} s -> {args.output}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """``mixcse-mine`` on ``argv`` (default ``sys.argv[1:]``) -> exit status (2: a one-line input error)."""
    return run_cli(mine_command, argv)


if __name__ == "__main__":
    sys.exit(main())
