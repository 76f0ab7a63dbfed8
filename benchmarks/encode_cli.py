"""Encoding a file from the command line: ``mixcse-encode`` (``mixcse_hf.cli.encode.main``, output .npy, its default
chunking) against sentence-transformers (``SentenceTransformer(path).encode(sentences, batch_size=64)``, then
``numpy.save``) on the first N sentences of the wiki head; all-MiniLM-L6-v2, CPU, float32, the same batch size.
Each measurement runs in its own fresh process (so peak RSS is that tool's own), the two tools alternate over the
rounds (in swapped order every other round), and the two outputs are compared.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/encode_cli.py [--sentences 3000] [--rounds 3] [--batch_size 64]
        [--chunk_size N]

A measurement runs from loading the model to the embeddings saved (imports are timed apart). Besides wall time it
records the process's CPU time over the same span: on a shared machine, other jobs slow the wall clock of either
tool at random, while the CPU seconds a tool spends per sentence move much less.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

RESULTS = os.path.join(os.path.dirname(__file__), "results", "encode_cli.json")
TOOLS = ("mixcse-encode", "sentence-transformers")


def measured(work: Callable[[], None]) -> dict[str, float]:
    """Wall and process CPU seconds of ``work()`` (all threads), and the peak RSS of the process after it."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_ours(model: str, input_file: str, output: str, batch_size: int, extra: list[str]) -> dict[str, float]:
    """``mixcse-encode MODEL INPUT OUTPUT`` (plus ``extra`` flags) in this process."""
    start = time.perf_counter()
    from mixcse_hf.cli.encode import main

    imported = time.perf_counter()
    flags = ["--batch_size", str(batch_size), "--device", "cpu", "--dtype", "float32", "--normalize", "--overwrite"]
    stderr = io.StringIO()

    def encode() -> None:
        with contextlib.redirect_stderr(stderr):
            status = main([model, input_file, output, *flags, *extra])
        if status != 0:
            raise RuntimeError(f"mixcse-encode failed ({status}): {stderr.getvalue()[-2000:]}")

    return {"import_seconds": imported - start, **measured(encode)}


def run_sentence_transformers(model: str, input_file: str, output: str, batch_size: int) -> dict[str, float]:
    """Load with ``SentenceTransformer``, read the lines, encode, ``numpy.save``."""
    start = time.perf_counter()
    from sentence_transformers import SentenceTransformer

    imported = time.perf_counter()

    def encode() -> None:
        encoder = SentenceTransformer(model, device="cpu")
        with open(input_file, encoding="utf-8") as handle:
            sentences = [line.rstrip("\n") for line in handle]  # as mixcse-encode reads a .txt
        np.save(output, encoder.encode(sentences, batch_size=batch_size).astype(np.float32, copy=False))

    return {"import_seconds": imported - start, **measured(encode)}


def child_main(argv: list[str]) -> None:
    tool, model, input_file, output, batch_size, *extra = argv
    if tool == TOOLS[0]:
        result = run_ours(model, input_file, output, int(batch_size), extra)
    else:
        result = run_sentence_transformers(model, input_file, output, int(batch_size))
    import torch  # already loaded by the tool

    print("RESULT " + json.dumps({"tool": tool, **result, "torch_threads": torch.get_num_threads()}), flush=True)


def run_child(tool: str, model: str, input_file: str, output: str, batch_size: int, extra: list[str]) -> dict:
    """One measurement in a fresh process; returns its RESULT record."""
    from harness import child_result  # not at the top: harness loads torch, which a child must not pay for

    return child_result(__file__, [tool, model, input_file, output, str(batch_size), *extra], tool)


def write_input(directory: str, count: int) -> str:
    """The first ``count`` lines of the wiki head, in a text file under ``directory``."""
    data_dir = os.environ.get("MIXCSE_DATA_DIR", "../shared/data")
    with open(os.path.join(data_dir, "wiki", "wiki1m_head.txt"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()[:count]
    path = os.path.join(directory, "sentences.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def compare(ours_file: str, theirs_file: str) -> dict[str, float]:
    """Max abs difference and min cosine of the two outputs, as unit vectors (the model's pipeline normalises)."""
    a, b = (np.load(path) for path in (ours_file, theirs_file))
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    return {"max_abs_difference": float(np.abs(a - b).max()), "min_cosine": float((a * b).sum(axis=1).min())}


def summarise(results: list[dict], count: int) -> dict[str, float]:
    """Sentences/s at the median and best wall time and per median CPU second; peak RSS (max); median import."""
    return {
        "sentences_per_second": count / statistics.median(r["seconds"] for r in results),
        "best_sentences_per_second": count / min(r["seconds"] for r in results),
        "sentences_per_cpu_second": count / statistics.median(r["cpu_seconds"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "import_seconds": statistics.median(r["import_seconds"] for r in results),
    }


COLUMNS = {
    "sentences_per_second": "sentences/s (median)",
    "best_sentences_per_second": "sentences/s (best)",
    "sentences_per_cpu_second": "sentences per CPU-s",
    "peak_rss_mb": "peak RSS (MB)",
    "import_seconds": "import (s)",
}


def table(summary: dict[str, dict[str, float]]) -> str:
    """The markdown table: one row per tool, then ours / ST for every column."""
    rows = ["| tool | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for tool in TOOLS:
        rows.append(f"| {tool} | " + " | ".join(f"{summary[tool][key]:.1f}" for key in COLUMNS) + " |")
    ours, theirs = (summary[tool] for tool in TOOLS)
    rows.append("| ratio ours / ST | " + " | ".join(f"{ours[key] / theirs[key]:.3f}" for key in COLUMNS) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--chunk_size", type=int, help="mixcse-encode's --chunk_size (default: its own)")
    args = parser.parse_args()
    from harness import DEFAULT_MODEL, machine  # not at the top: a child's import time is its tool's own

    from mixcse_hf.models.encoder import resolve_model_path

    # What a user types for each: our command resolves the Hub id to the installed offline copy itself.
    models = {TOOLS[0]: DEFAULT_MODEL, TOOLS[1]: resolve_model_path(DEFAULT_MODEL)}
    extra = [] if args.chunk_size is None else ["--chunk_size", str(args.chunk_size)]
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
    with tempfile.TemporaryDirectory() as directory:
        input_file = write_input(directory, args.sentences)
        outputs = {tool: os.path.join(directory, f"{tool}.npy") for tool in TOOLS}
        for round_index in range(args.rounds):
            for tool in TOOLS if round_index % 2 == 0 else TOOLS[::-1]:
                result = run_child(tool, models[tool], input_file, outputs[tool], args.batch_size, extra)
                runs[tool].append(result)
                print(
                    f"round {round_index + 1}/{args.rounds} {tool}: {result['seconds']:.1f} s "
                    f"({result['cpu_seconds']:.1f} CPU-s), {result['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
        agreement = compare(outputs[TOOLS[0]], outputs[TOOLS[1]])
    summary = {tool: summarise(results, args.sentences) for tool, results in runs.items()}
    load_after = os.getloadavg()
    print(
        f"\n{args.sentences} wiki sentences, {DEFAULT_MODEL}, batch {args.batch_size}, CPU float32, "
        f"{args.rounds} rounds; 1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n"
    )
    print(table(summary))
    print(
        f"\nunit embeddings: max abs difference {agreement['max_abs_difference']:.2e}, "
        f"min cosine {agreement['min_cosine']:.6f}"
    )
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        record = {"machine": machine(), "options": vars(args), "load_average": [load_before, load_after]}
        record.update(summary=summary, runs=runs, **agreement)
        json.dump(record, handle, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
    else:
        main()
