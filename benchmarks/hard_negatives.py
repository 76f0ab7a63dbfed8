"""Where hard negatives come from, on the SICK proxy (``configs/quickstart_supervised.yaml``: all-MiniLM-L6-v2,
MixCSE-sup λ 0.3 with the reference mixing of positives): the same (anchor, positive) pairs trained with no hard
negative, with SICK's own contradiction, with the negative ``mixcse-mine`` mines with the start model, and with
that mined negative mixed (``--mixed_hard_negative``); then the pairs and the mined file with ``--mask_duplicates``
(SICK repeats premises). Several seeds per cell, each final model evaluated on the 7 STS tasks; resumable like
``benchmarks/ablation.py``, whose runner it uses. Writes the data files and ``results.md`` into ``--output_dir``.

The pairs: every distinct (premise, entailment) pair of SICK's training split that has a contradiction
(``scripts/sick_triplets.py``), each once, with its first contradiction as SICK's negative. The miner's candidates
are the other pairs' positives and every sentence of SICK's training split; it keeps at most 95% of the positive's
score (``--relative_margin 0.05``) and never a duplicate of the anchor or the positive.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/hard_negatives.py
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.ablation import grid_parser, masked_lines, run_grid  # noqa: E402
from benchmarks.supervised import CONFIG, report, task_table  # noqa: E402

REFERENCE = "pairs, no hard negative"
MINE_OPTIONS = ["--num_negatives", "1", "--relative_margin", "0.05", "--pooler", "cls_before_pooler"]


def sick_module():
    path = os.path.join(REPO_ROOT, "scripts", "sick_triplets.py")
    spec = importlib.util.spec_from_file_location("sick_triplets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def build_data(senteval_dir: str, data_dir: str, model: str) -> dict[str, str]:
    """pairs.csv, sick.csv (with SICK's contradiction), corpus.txt and mined.csv in ``data_dir``: their paths."""
    os.makedirs(data_dir, exist_ok=True)
    sick = sick_module()
    rows = sick.read_sick(os.path.join(senteval_dir, "SICK", "SICK_train.txt"))
    first_negative: dict[tuple[str, str], str] = {}
    for premise, entailed, negative in sick.sick_triplets(rows):
        first_negative.setdefault((premise, entailed), negative)
    paths = {name: os.path.join(data_dir, name) for name in ("pairs.csv", "sick.csv", "corpus.txt", "mined.csv")}
    write_csv(paths["pairs.csv"], ("anchor", "positive"), list(first_negative))
    write_csv(paths["sick.csv"], ("anchor", "positive", "negative"), [(*pair, c) for pair, c in first_negative.items()])
    sentences = dict.fromkeys(text for row in rows for text in (row["sentence_A"], row["sentence_B"]))
    with open(paths["corpus.txt"], "w", encoding="utf-8") as handle:
        handle.write("".join(f"{text}\n" for text in sentences))
    if not os.path.isfile(paths["mined.csv"]):
        command = [sys.executable, "-m", "mixcse_hf.cli.mine", model, paths["pairs.csv"], paths["mined.csv"]]
        subprocess.run([*command, "--corpus", paths["corpus.txt"], *MINE_OPTIONS], check=True)
    return paths


def cells(paths: dict[str, str]) -> dict[str, list[str]]:
    return {
        REFERENCE: ["--train_file", paths["pairs.csv"]],
        "SICK's contradiction": ["--train_file", paths["sick.csv"]],
        "mined by the start model": ["--train_file", paths["mined.csv"]],
        "mined, mixed (mixed_hard_negative)": ["--train_file", paths["mined.csv"], "--mixed_hard_negative", "true"],
        "pairs, duplicates masked": ["--train_file", paths["pairs.csv"], "--mask_duplicates", "true"],
        "mined, duplicates masked": ["--train_file", paths["mined.csv"], "--mask_duplicates", "true"],
    }


def row_count(path: str) -> int:
    with open(path, encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def main() -> None:
    parser = grid_parser(__doc__, CONFIG, "hard_negatives")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="the miner's encoder")
    args = parser.parse_args()
    args.max_steps, args.seven_task, args.keep_checkpoints = None, True, False
    senteval_dir = os.path.join(os.environ.get("MIXCSE_DATA_DIR", "../shared/data"), "senteval")
    paths = build_data(senteval_dir, os.path.join(args.output_dir, "data"), args.model)
    cell_flags = cells(paths)
    rows = run_grid(cell_flags, args)
    data_rows = {cell: row_count(flags[1]) for cell, flags in cell_flags.items()}
    tables = [
        report(rows, args.seeds, REFERENCE, data_rows),
        masked_lines(cell_flags, args.seeds, args.output_dir),
        task_table(list(rows), args.seeds, args.output_dir),
    ]
    table = "\n".join(tables)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
