"""Duplicate masking (``--mask_duplicates``) on the CPU proxy: the quick start (``configs/quickstart.yaml``, the
wiki head: 162 of its lines occur more than once) with and without masking, then the same on an extreme case
built from it: every sentence 4 times in a row, streamed in file order (``--shuffle_buffer_size 0``), so that
each batch of 64 holds 16 sentences 4 times each, as when a file keeps a premise's hypotheses together. Every
run trains 186 steps (the quick start's one epoch); several seeds per cell, each final model evaluated on the 7
STS tasks; resumable like ``benchmarks/ablation.py``, whose runner it uses. Writes ``results.md`` and the
extreme corpus into ``--output_dir``.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/duplicates.py
"""

from __future__ import annotations

import os
import sys
from collections import Counter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.ablation import BASE_CONFIG, grid_parser, masked_lines, run_grid  # noqa: E402
from benchmarks.supervised import report, task_table  # noqa: E402
from mixcse_hf.models.batch import normalize_text  # noqa: E402
from mixcse_hf.text_files import is_blank, read_lines  # noqa: E402

QUICK_START_STEPS = 186
COPIES = 4
MASK = ["--mask_duplicates", "true"]


def write_extreme_corpus(wiki_head: str, path: str) -> None:
    """Every line of ``wiki_head`` ``COPIES`` times in a row."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" * COPIES for _, line in read_lines(wiki_head)))


def duplicate_statistics(path: str, batches: tuple[int, ...] = (64, 256, 1024, 4096)) -> str:
    """How often equal lines of ``path`` (equal as duplicate masking compares them) share a random batch: the
    expected pairs of equal lines in a batch of B drawn from N lines, sum of C(c, 2) over each text's count c,
    times B (B - 1) / (N (N - 1))."""
    counts = Counter(normalize_text(line) for _, line in read_lines(path) if not is_blank(line))
    lines, pairs = sum(counts.values()), sum(c * (c - 1) // 2 for c in counts.values())
    repeated = [c for c in counts.values() if c > 1]
    expected = ", ".join(f"{b}: {pairs * b * (b - 1) / (lines * (lines - 1)):.3g}" for b in batches)
    most = max(repeated, default=1)
    return (
        f"{os.path.basename(path)}: {lines} lines, {len(repeated)} of them occur more than once (at most {most} "
        f"times), {pairs} pairs of equal lines; expected pairs in a random batch of B: {expected}\n"
    )


def cells(extreme_corpus: str) -> dict[str, list[str]]:
    extreme = ["--train_file", extreme_corpus, "--streaming", "true", "--shuffle_buffer_size", "0"]
    return {
        "quick start": [],
        "quick start, masked": MASK,
        f"each sentence {COPIES}x in a row": extreme,
        f"each sentence {COPIES}x in a row, masked": [*extreme, *MASK],
    }


def main() -> None:
    args = grid_parser(__doc__, BASE_CONFIG, "duplicates").parse_args()
    args.max_steps, args.seven_task, args.keep_checkpoints = QUICK_START_STEPS, True, False
    data_dir = os.environ.get("MIXCSE_DATA_DIR", "../shared/data")
    extreme_corpus = os.path.join(args.output_dir, "data", f"wiki1m_head_x{COPIES}.txt")
    write_extreme_corpus(os.path.join(data_dir, "wiki", "wiki1m_head.txt"), extreme_corpus)
    cell_flags = cells(extreme_corpus)
    rows = run_grid(cell_flags, args)
    tables = [
        duplicate_statistics(os.path.join(data_dir, "wiki", "wiki1m_head.txt")),
        report({c: s for c, s in rows.items() if c.startswith("quick")}, args.seeds, "quick start", pooler="avg"),
        report({c: s for c, s in rows.items() if c.startswith("each")}, args.seeds, list(cell_flags)[2], pooler="avg"),
        masked_lines(cell_flags, args.seeds, args.output_dir),
        task_table(list(rows), args.seeds, args.output_dir, trained_on_sick=False),
    ]
    table = "\n".join(tables)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
