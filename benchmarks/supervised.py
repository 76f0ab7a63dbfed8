"""SimCSE-sup against MixCSE-sup on the CPU proxy (``configs/quickstart_supervised.yaml``: all-MiniLM-L6-v2
on the 600 SICK-derived triplets), several seeds per cell, each run then evaluated on the 7 STS tasks.
Resumable like ``benchmarks/ablation.py`` (whose runner it uses): finished runs are kept. Prints and writes
``results.md`` into ``--output_dir``: mean ± std over seeds of STS-B dev/test and the 7-task average, with the
difference of means against SimCSE-sup.

    python scripts/sick_triplets.py --senteval_dir ../shared/data/senteval --output outputs/data/sick_triplets.csv
    MIXCSE_DATA_DIR=../shared/data python benchmarks/supervised.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.ablation import (  # noqa: E402
    SEVEN_TASK_FILE,
    difference,
    grid_parser,
    mean_std,
    run_dir,
    run_grid,
)

CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart_supervised.yaml")
REFERENCE = "SimCSE-sup (λ 0)"
CELLS = {
    REFERENCE: ["--mix_lambda", "0"],
    "MixCSE-sup (λ 0.3, reference mixing of positives)": ["--mix_lambda", "0.3"],
    "MixCSE-sup + mixed hard negatives (λ 0.3)": ["--mix_lambda", "0.3", "--mixed_hard_negative", "true"],
    "mixed hard negatives only (λ 0.3)": [
        *("--mix_lambda", "0.3", "--mixed_negatives", "none", "--mixed_hard_negative", "true"),
    ],
}
METRICS = ("dev", "test", "avg7")


TASKS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")


def task_means(cell: str, seeds: list[int], output_dir: str) -> dict[str, float] | None:
    """Mean over the evaluated seeds of each task's "all" Spearman (the 7-task evaluation's files)."""
    values: dict[str, list[float]] = {task: [] for task in TASKS}
    for seed in seeds:
        path = os.path.join(run_dir(output_dir, cell, seed), SEVEN_TASK_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                tasks = json.load(handle)["tasks"]
            for task in TASKS:
                values[task].append(tasks[task]["all"])
    return {task: statistics.mean(v) for task, v in values.items()} if values["stsb"] else None


def task_table(cells: list[str], seeds: list[int], output_dir: str, trained_on_sick: bool = True) -> str:
    sick_note = "; SICK-R's test split comes from the same corpus as the training triplets" if trained_on_sick else ""
    lines = [
        f'Per task (SentEval protocol, "all" setting), mean over seeds{sick_note}.',
        "",
        f"| cell | {' | '.join(TASKS)} | avg |",
        f"|---|{'---|' * (len(TASKS) + 1)}",
    ]
    for cell in cells:
        means = task_means(cell, seeds, output_dir)
        if means:
            numbers = [f"{means[task]:.2f}" for task in TASKS] + [f"{statistics.mean(means.values()):.2f}"]
            lines.append(f"| {cell} | {' | '.join(numbers)} |")
    return "\n".join(lines) + "\n"


def report(
    rows: dict[str, dict],
    seeds: list[int],
    reference_cell: str = REFERENCE,
    data_rows: dict[str, int] | None = None,
    pooler: str = "cls_before_pooler",
) -> str:
    """The table of ``rows`` (cell -> summary), Δ against ``reference_cell``; ``data_rows``: a column of each cell's
    training rows; ``pooler``: the one the runs were evaluated with."""
    reference = rows.get(reference_cell)
    rows_column = " rows |" if data_rows else ""
    lines = [
        f"Seeds {seeds}; Spearman x100 ({pooler}), mean ± std over seeds; n: finished runs. Δ: difference "
        f"of means against {reference_cell}, in brackets in units of the pooled standard deviation.",
        "",
        f"| cell |{rows_column} STS-B dev | STS-B test | 7-task avg | Δ dev | Δ test | Δ avg | n |",
        f"|---|{'---|' * (7 + bool(data_rows))}",
    ]
    for cell, summary in rows.items():
        numbers = [mean_std(summary, metric) for metric in METRICS]
        deltas = [difference(summary, reference, metric) for metric in METRICS]
        count = str(summary["dev"][2]) if "dev" in summary else "0"
        rows_cell = f" {data_rows[cell]} |" if data_rows else ""
        lines.append(f"| {cell} |{rows_cell} {' | '.join(numbers)} | {' | '.join(deltas)} | {count} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = grid_parser(__doc__, CONFIG, "supervised").parse_args()
    # The ablation runner's options: every run its full budget, 7-task evaluation, final models only.
    args.max_steps, args.seven_task, args.keep_checkpoints = None, True, False
    os.makedirs(args.output_dir, exist_ok=True)
    rows = run_grid(CELLS, args)
    table = report(rows, args.seeds) + "\n" + task_table(list(rows), args.seeds, args.output_dir)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
