"""Streaming vs map-style training data on generated corpora of growing size: time from process start to the first
optimizer step, steady training throughput and peak RSS (each measurement in its own process).

    python benchmarks/streaming.py make --lines 100000 1000000 10000000 --dir /tmp/corpora
    MIXCSE_DATA_DIR=../shared/data python benchmarks/streaming.py measure --dir /tmp/corpora \\
        --lines 100000 1000000 10000000 [--steps 10 --warmup 3 --batch_size 64]

``make`` writes ``lines_N.txt``: sentences drawn (seeded) from the wiki head, so lengths are real; the files are
large (about 1.3 GB at 10M lines) and never committed. Each map-style run gets an empty ``datasets`` cache: its
time to the first step is that of a first run (loading and tokenising the whole corpus). Results go to
``benchmarks/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine, run_child

MODES = {"streaming": "mixcse_streaming", "map-style": "mixcse"}


def corpus_path(directory: Path, lines: int) -> Path:
    return directory / f"lines_{lines}.txt"


def make_corpora(directory: Path, sizes: list[int], seed: int = 0) -> None:
    data_dir = Path(os.environ.get("MIXCSE_DATA_DIR", "../shared/data"))
    sentences = (data_dir / "wiki" / "wiki1m_head.txt").read_text(encoding="utf-8").splitlines()
    sentences = [sentence for sentence in sentences if sentence.strip()]
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for lines in sizes:
        path = corpus_path(directory, lines)
        with open(path, "w", encoding="utf-8") as handle:
            for start in range(0, lines, 100_000):
                chunk = rng.choices(sentences, k=min(100_000, lines - start))
                handle.write("\n".join(chunk) + "\n")
        print(f"{path}: {lines:,} lines, {path.stat().st_size / 2**20:.0f} MiB", flush=True)


def measure_one(mode: str, corpus: Path, options: argparse.Namespace) -> dict:
    """One training process; the time to the first step counts from just before the process starts."""
    child_options = ["--train_file", str(corpus), "--batch_size", str(options.batch_size)]
    child_options += ["--steps", str(options.steps), "--warmup", str(options.warmup)]
    cache = tempfile.mkdtemp(prefix="datasets-cache-")
    os.environ["HF_DATASETS_CACHE"] = cache  # inherited by the child: no tokenised corpus from an earlier run
    try:
        launched = time.time()
        result = run_child(MODES[mode], child_options)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result["time_to_first_step_s"] = result.pop("first_step_end") - launched
    return result


def read_rate(corpus: Path, rows: int = 1_000_000) -> float:
    """Rows per second one reader of the stream yields without tokenising: what each worker of each process reads
    (a process keeps 1/processes of it)."""
    from mixcse_hf.training.streaming import StreamingCorpus, row_source

    stream = StreamingCorpus(row_source(str(corpus), None), global_batch_size=64, shuffle_buffer_size=10_000, seed=0)
    start = time.perf_counter()
    count = sum(1 for _ in itertools.islice(itertools.chain.from_iterable(stream.global_batches()), rows))
    return count / (time.perf_counter() - start)


def measure(options: argparse.Namespace) -> dict:
    rows = []
    for lines in options.lines:
        corpus = corpus_path(options.dir, lines)
        if not corpus.is_file():
            sys.exit(f"{corpus} is missing: run `python benchmarks/streaming.py make --lines {lines}` first")
        for mode in MODES:
            result = measure_one(mode, corpus, options)
            step = statistics.median(result["step_seconds"])
            row = {
                "lines": lines,
                "mode": mode,
                "time_to_first_step_s": round(result["time_to_first_step_s"], 1),
                "median_step_s": round(step, 3),
                "sentences_per_s": round(options.batch_size / step, 1),
                "peak_rss_mb": round(result["peak_rss_mb"]),
                "step_seconds": result["step_seconds"],
            }
            rows.append(row)
            print(
                f"{lines:>11,} lines {mode:<9}: first step after {row['time_to_first_step_s']:7.1f} s, "
                f"{row['sentences_per_s']:5.1f} sentences/s, peak RSS {row['peak_rss_mb']:5d} MB",
                flush=True,
            )
    rate = read_rate(corpus_path(options.dir, options.lines[-1]))
    print(f"one reader of the stream: {rate:,.0f} rows/s (read, blank check, shuffle buffer; no tokenising)")
    settings = {"read_rows_per_s": round(rate), "steps": options.steps, "warmup": options.warmup}
    settings["batch_size"] = options.batch_size
    return {"machine": machine(), **settings, "rows": rows}


def print_table(rows: list[dict]) -> None:
    by_key = {(row["lines"], row["mode"]): row for row in rows}
    print("\n| lines | mode | time to first step | sentences/s | peak RSS |")
    print("|---:|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['lines']:,} | {row['mode']} | {row['time_to_first_step_s']:.1f} s | "
            f"{row['sentences_per_s']:.1f} | {row['peak_rss_mb']} MB |"
        )
    sizes = sorted({row["lines"] for row in rows})
    for lines in sizes:
        streaming, mapped = by_key[(lines, "streaming")], by_key[(lines, "map-style")]
        ratio = streaming["sentences_per_s"] / mapped["sentences_per_s"]
        print(f"{lines:,} lines: streaming / map-style throughput {ratio:.3f}")
    growth = by_key[(sizes[-1], "streaming")]["peak_rss_mb"] - by_key[(sizes[0], "streaming")]["peak_rss_mb"]
    print(f"streaming peak RSS growth {sizes[0]:,} -> {sizes[-1]:,} lines: {growth:+d} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["make", "measure"])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "mixcse-corpora")
    parser.add_argument("--steps", type=int, default=10, help="measured steps after the warm-up steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "streaming.json")
    options = parser.parse_args()
    if options.action == "make":
        make_corpora(options.dir, options.lines)
        return
    results = measure(options)
    print_table(results["rows"])
    options.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"written: {options.output}")


if __name__ == "__main__":
    main()
