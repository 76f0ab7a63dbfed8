"""Ablation grid on the CPU proxy (the quick start: all-MiniLM-L6-v2, CLS pooling, one epoch of the wiki head),
several seeds per cell, identical budgets. Resumable: finished runs (``sts_results.json`` present) are kept,
so re-running the same command continues the grid. Writes a markdown table (mean ± std of STS-B dev/test per
cell) and PNG plots into ``--output_dir``.

    MIXCSE_DATA_DIR=../shared/data nohup python benchmarks/ablation.py > ablation.log 2>&1 &
    python benchmarks/ablation.py --report_only          # table and plots from what has finished

Cells: SimCSE; MixCSE (reference) at each ``--lambdas``; then, at the best lambda of that sweep (mean dev),
every other option: random and hardest partners, linear and cosine schedules (to 2x lambda), adaptive lambda,
anchor-side block only, -inf masks (neg_inf), one mixed negative per anchor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from mixcse_hf.plot import load_log_history, plot_gradient_signal  # noqa: E402

BASE_CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart.yaml")
RESULT_FILE = "sts_results.json"


def strategy_cells(best_lambda: float) -> dict[str, list[str]]:
    lam = str(best_lambda)
    end = str(min(2 * best_lambda, 0.9))
    return {
        "random partner": ["--mix_lambda", lam, "--mix_strategy", "random"],
        "hardest partner": ["--mix_lambda", lam, "--mix_strategy", "hardest"],
        "linear schedule": ["--mix_lambda", lam, "--lambda_schedule", "linear", "--mix_lambda_end", end],
        "cosine schedule": ["--mix_lambda", lam, "--lambda_schedule", "cosine", "--mix_lambda_end", end],
        "adaptive lambda": ["--mix_lambda", lam, "--lambda_schedule", "adaptive"],
        "anchor side only": ["--mix_lambda", lam, "--mix_sides", "anchor"],
        "-inf masks": ["--mix_lambda", lam, "--mixed_negative_mask", "neg_inf"],
        "paired (one per anchor)": ["--mix_lambda", lam, "--mixed_negatives", "paired"],
    }


def run_dir(output_dir: str, cell: str, seed: int) -> str:
    slug = "".join(c if c.isalnum() or c in ".-" else "_" for c in cell)
    return os.path.join(output_dir, slug, f"seed{seed}")


def run_cell(cell: str, flags: list[str], seed: int, args: argparse.Namespace) -> dict | None:
    """Train one (cell, seed) unless already done; returns its results (None when it failed)."""
    directory = run_dir(args.output_dir, cell, seed)
    result_path = os.path.join(directory, RESULT_FILE)
    if not os.path.isfile(result_path):
        if args.report_only:
            return None
        command = [sys.executable, os.path.join(REPO_ROOT, "run_mixcse.py"), args.config, "--output_dir", directory]
        command += ["--overwrite_output_dir", "true", "--seed", str(seed), "--disable_tqdm", "true", *flags]
        if args.max_steps:
            command += ["--max_steps", str(args.max_steps)]
        print(f"[{cell} seed {seed}] {' '.join(flags)}", flush=True)
        process = subprocess.run(command, capture_output=True, text=True)
        if process.returncode != 0:
            print(f"[{cell} seed {seed}] failed: {process.stderr.strip().splitlines()[-1:]}", flush=True)
            return None
        if not args.keep_models:
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if name.startswith("checkpoint-") or name.endswith(".safetensors") or name in ("2_Dense",):
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with open(result_path, encoding="utf-8") as handle:
        results = json.load(handle)["stsb_spearman"]
    pooler = next(iter(results))
    return results[pooler]["trained"]


def summarise(values: list[dict]) -> dict[str, tuple[float, float, int]]:
    summary = {}
    for split in ("dev", "test"):
        numbers = [v[split] for v in values]
        spread = statistics.stdev(numbers) if len(numbers) > 1 else float("nan")
        summary[split] = (statistics.mean(numbers), spread, len(numbers))
    return summary


def write_report(rows: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"Seeds {args.seeds}; {'max_steps ' + str(args.max_steps) if args.max_steps else 'one epoch (186 steps)'};"
        " STS-B Spearman x100, mean ± std over seeds (n = finished runs).",
        "",
        "| cell | dev | test | n |",
        "|---|---|---|---|",
    ]
    for cell, summary in rows.items():
        (dev, dev_sd, n), (test, test_sd, _) = summary["dev"], summary["test"]
        lines.append(f"| {cell} | {dev:.2f} ± {dev_sd:.2f} | {test:.2f} ± {test_sd:.2f} | {n} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    return table


def plot_signal(args: argparse.Namespace, best_cell: str) -> None:
    seed = args.seeds[0]
    runs = {}
    for label, cell in (("SimCSE", "SimCSE"), ("MixCSE", best_cell)):
        directory = run_dir(args.output_dir, cell, seed)
        if os.path.isfile(os.path.join(directory, "trainer_state.json")):
            runs[label] = load_log_history(directory)
    if len(runs) == 2:
        plot_gradient_signal(runs, os.path.join(args.output_dir, "gradient_signal.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=BASE_CONFIG)
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "outputs", "ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--max_steps", type=int, help="shorten every run to this many steps (uniformly)")
    parser.add_argument("--report_only", action="store_true", help="no training: table and plots from finished runs")
    parser.add_argument("--keep_models", action="store_true", help="keep weights and checkpoints of every run")
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    sweep = {"SimCSE": ["--mix_lambda", "0"], **{f"MixCSE λ={lam}": ["--mix_lambda", str(lam)] for lam in args.lambdas}}
    rows: dict[str, dict] = {}
    for cell, flags in sweep.items():
        values = [v for seed in args.seeds if (v := run_cell(cell, flags, seed, args)) is not None]
        if values:
            rows[cell] = summarise(values)
    mixcse_rows = {cell: row for cell, row in rows.items() if cell.startswith("MixCSE")}
    if mixcse_rows:
        best_cell = max(mixcse_rows, key=lambda cell: mixcse_rows[cell]["dev"][0])
        best_lambda = float(best_cell.split("=")[1])
        print(f"best lambda by mean dev: {best_lambda}", flush=True)
        for cell, flags in strategy_cells(best_lambda).items():
            label = f"{cell} (λ={best_lambda})"
            values = [v for seed in args.seeds if (v := run_cell(label, flags, seed, args)) is not None]
            if values:
                rows[label] = summarise(values)
        plot_signal(args, best_cell)
    print(write_report(rows, args), flush=True)


if __name__ == "__main__":
    main()
