"""Ablation grid on the CPU proxy (the quick start: all-MiniLM-L6-v2, CLS pooling, one epoch of the wiki head),
several seeds per cell, identical budgets. Resumable: finished runs (``sts_results.json`` present) are kept,
so re-running the same command continues the grid. Writes into ``--output_dir`` a markdown table
(``results.md``: mean ± std over seeds of STS-B dev/test and, with ``--seven_task``, the 7-task average, with
differences against the reference λ = 0.2) and two plots (``ablation.png``, ``gradient_signal.png``).

    mkdir -p outputs && MIXCSE_DATA_DIR=../shared/data nohup python benchmarks/ablation.py > outputs/ablation.log 2>&1 &
    MIXCSE_DATA_DIR=../shared/data python benchmarks/ablation.py --seven_task --cells SimCSE "MixCSE λ=0.2"
    python benchmarks/ablation.py --report_only          # table and plots from what has finished

Cells: SimCSE; MixCSE (reference) at each ``--lambdas``; then, at the best lambda of that sweep (mean dev),
every other option: random and hardest partners, linear and cosine schedules (to 2x lambda), adaptive lambda,
anchor-side block only, -inf masks (neg_inf), one mixed negative per anchor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

from matplotlib.figure import Figure

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from mixcse_hf.cli.plot import load_log_history  # noqa: E402
from mixcse_hf.training.curves import plot_gradient_signal  # noqa: E402
from mixcse_hf.training.run_dir import RESULTS_FILE, read_resolved_config, trainer_state_path  # noqa: E402

BASE_CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart.yaml")
SEVEN_TASK_FILE = "sts7_results.json"
COSINE_KEYS = ("sim_positive", "sim_negative", "sim_mixed_negative")
SIGNAL_METRICS = ("grad_mean", "grad_first", "grad_last", "grad_mixed_share_mean", *(f"{k}_last" for k in COSINE_KEYS))
REFERENCE_LAMBDA = 0.2  # the released MixCSE recipe; the Δ columns compare against it


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


def train_run(flags: list[str], seed: int, directory: str, args: argparse.Namespace) -> bool:
    command = [sys.executable, os.path.join(REPO_ROOT, "run_mixcse.py"), args.config, "--output_dir", directory]
    command += ["--overwrite_output_dir", "true", "--seed", str(seed), "--disable_tqdm", "true"]
    command += ["--mask_duplicates", "false", *flags]  # the reference loss, as every table was measured; flags may mask
    if args.max_steps:
        command += ["--max_steps", str(args.max_steps)]
    if not report_failure(subprocess.run(command, capture_output=True, text=True), directory):
        return False
    if not args.keep_checkpoints:  # the final model stays: the 7-task evaluation reads it
        for name in os.listdir(directory):
            if name.startswith("checkpoint-"):
                shutil.rmtree(os.path.join(directory, name))
    return True


def run_config(directory: str) -> dict:
    """The resolved configuration the run in ``directory`` recorded."""
    return read_resolved_config(directory)


def check_budget(directory: str, args: argparse.Namespace) -> None:
    """Resuming reads finished runs as they are: refuse runs trained for another number of steps."""
    trained_steps, wanted_steps = run_config(directory).get("max_steps"), args.max_steps or -1
    if trained_steps != wanted_steps:
        sys.exit(
            f"error: {directory} was trained with max_steps {trained_steps}, this grid asks for {wanted_steps}; "
            "pass another --output_dir or the same --max_steps"
        )


def evaluate_seven_tasks(directory: str) -> bool:
    """The 7-task table of the finished run in ``directory`` (its recorded pooler), into ``SEVEN_TASK_FILE``."""
    senteval_dir = run_config(directory).get("senteval_dir")
    command = [sys.executable, "-m", "mixcse_hf.cli.evaluate", "--model_name_or_path", directory]
    command += ["--output_json", os.path.join(directory, SEVEN_TASK_FILE)]
    if senteval_dir:
        command += ["--senteval_dir", senteval_dir]
    return report_failure(subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT), directory)


def report_failure(process: subprocess.CompletedProcess, directory: str) -> bool:
    if process.returncode != 0:
        print(f"[{directory}] failed: {process.stderr.strip().splitlines()[-1:]}", flush=True)
    return process.returncode == 0


def read_run(directory: str) -> dict[str, float] | None:
    """STS-B dev/test of the trained model (the run's first evaluation pooler) and, once evaluated, the
    7-task average ("avg7"); None while the run has not finished."""
    result_path = os.path.join(directory, RESULTS_FILE)
    if not os.path.isfile(result_path):
        return None
    with open(result_path, encoding="utf-8") as handle:
        results = json.load(handle)["stsb_spearman"]
    values = dict(results[next(iter(results))]["trained"])
    seven_task_path = os.path.join(directory, SEVEN_TASK_FILE)
    if os.path.isfile(seven_task_path):
        with open(seven_task_path, encoding="utf-8") as handle:
            values["avg7"] = json.load(handle)["average"]
    if os.path.isfile(trainer_state_path(directory)):
        values.update(training_signal(load_log_history(directory)))
    return values


def training_signal(log_history: list[dict]) -> dict[str, float]:
    """From what the trainer logged (10-step means): the anchor-gradient norm over the run, in its first and
    last entry, the mixed-negative share over the run, and the last entry's cosines."""
    logged = [entry for entry in log_history if "grad_anchor_norm" in entry]
    if not logged:
        return {}
    norms = [entry["grad_anchor_norm"] for entry in logged]
    signal = {"grad_mean": statistics.mean(norms), "grad_first": norms[0], "grad_last": norms[-1]}
    signal["grad_mixed_share_mean"] = statistics.mean(entry.get("grad_mixed_share", 0.0) for entry in logged)
    signal.update({f"{key}_last": logged[-1][key] for key in COSINE_KEYS if key in logged[-1]})
    return signal


def masked_per_step(directory: str) -> float | None:
    """Mean over the run's logged entries of ``masked_duplicates`` (logits masked per step), None without any."""
    if not os.path.isfile(trainer_state_path(directory)):
        return None
    logged = [entry["masked_duplicates"] for entry in load_log_history(directory) if "masked_duplicates" in entry]
    return statistics.mean(logged) if logged else None


def masked_lines(cell_flags: dict[str, list[str]], seeds: list[int], output_dir: str) -> str:
    """For each cell that masks duplicates (``--mask_duplicates true`` in its flags), the logits it masked per
    step, mean over its finished runs."""
    lines = ["Logits masked per step (the logged `masked_duplicates`, mean over logged steps and seeds):", ""]
    for cell, flags in cell_flags.items():
        if "--mask_duplicates" not in flags or flags[flags.index("--mask_duplicates") + 1] != "true":
            continue
        counts = [count for seed in seeds if (count := masked_per_step(run_dir(output_dir, cell, seed))) is not None]
        if counts:
            lines.append(f"- {cell}: {statistics.mean(counts):.2f}")
    return "\n".join(lines) + "\n"


def run_cell(cell: str, flags: list[str], seed: int, args: argparse.Namespace) -> dict[str, float] | None:
    """Train one (cell, seed) unless already done (and evaluate its 7 tasks with ``--seven_task``); returns
    its results, None when it has not finished."""
    directory = run_dir(args.output_dir, cell, seed)
    selected = not args.report_only and (not args.cells or any(cell.startswith(name) for name in args.cells))
    finished = os.path.isfile(os.path.join(directory, RESULTS_FILE))
    if finished:
        check_budget(directory, args)
    if selected and not finished:
        print(f"[{cell} seed {seed}] {' '.join(flags)}", flush=True)
        finished = train_run(flags, seed, directory, args)
    if selected and finished and args.seven_task and not os.path.isfile(os.path.join(directory, SEVEN_TASK_FILE)):
        print(f"[{cell} seed {seed}] 7-task evaluation", flush=True)
        evaluate_seven_tasks(directory)
    return read_run(directory)


def run_cells(cells: dict[str, list[str]], args: argparse.Namespace, runs: dict[str, dict[int, dict]]) -> None:
    """Every seed of every cell; ``runs[cell][seed]`` collects the finished ones."""
    for cell, flags in cells.items():
        finished = {seed: values for seed in args.seeds if (values := run_cell(cell, flags, seed, args)) is not None}
        if finished:
            runs[cell] = finished


def grid_parser(description: str, config: str, output_name: str) -> argparse.ArgumentParser:
    """The options every grid of (cell, seed) runs takes; ``output_name``: its folder under ``outputs/``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=config)
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "outputs", output_name))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument(
        "--cells", nargs="+", help="train/evaluate only the cells whose names start with these (others: read only)"
    )
    parser.add_argument("--report_only", action="store_true", help="no training: the results from finished runs")
    return parser


def run_grid(cell_flags: dict[str, list[str]], args: argparse.Namespace) -> dict[str, dict]:
    """Every (cell, seed) run, seed by seed, so that an interrupted grid has every cell at about the same count;
    returns the :func:`summarise` of each cell with finished runs."""
    finished: dict[str, list[dict]] = {cell: [] for cell in cell_flags}
    for seed in args.seeds:
        for cell, flags in cell_flags.items():
            if (values := run_cell(cell, flags, seed, args)) is not None:
                finished[cell].append(values)
    return {cell: summarise(values) for cell, values in finished.items() if values}


def summarise(values: list[dict[str, float]]) -> dict[str, tuple[float, float, int]]:
    """metric -> (mean, std, number of runs); a metric only some runs have is summarised over those."""
    summary = {}
    for metric in ("dev", "test", "avg7", *SIGNAL_METRICS):
        numbers = [v[metric] for v in values if metric in v]
        if numbers:
            spread = statistics.stdev(numbers) if len(numbers) > 1 else float("nan")
            summary[metric] = (statistics.mean(numbers), spread, len(numbers))
    return summary


def mean_std(summary: dict, metric: str) -> str:
    if metric not in summary:
        return "-"
    mean, spread, _ = summary[metric]
    return f"{mean:.2f} ± {spread:.2f}"


def difference(summary: dict, reference: dict | None, metric: str) -> str:
    if reference is None or metric not in summary or metric not in reference:
        return "-"
    (mean, spread, _), (reference_mean, reference_spread, _) = summary[metric], reference[metric]
    pooled = math.sqrt((spread**2 + reference_spread**2) / 2)
    noise = f" ({(mean - reference_mean) / pooled:+.1f} sd)" if pooled > 0 else ""  # False for nan (one seed)
    return f"{mean - reference_mean:+.2f}{noise}"


def write_report(rows: dict[str, dict], args: argparse.Namespace, reference_cell: str) -> str:
    reference = rows.get(reference_cell)
    budget = f"max_steps {args.max_steps}" if args.max_steps else "one epoch (186 steps)"
    lines = [
        f"Seeds {args.seeds}; {budget}; Spearman x100, mean ± std over seeds. n: finished runs (n7: of them with"
        f" the 7-task evaluation). Δ: difference of means against {reference_cell} (the reference recipe), in"
        " brackets in units of the two cells' pooled standard deviation, sqrt((sd² + sd_ref²) / 2).",
        "",
        "| cell | STS-B dev | STS-B test | 7-task avg | Δ dev | Δ test | Δ avg | n | n7 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, summary in rows.items():
        numbers = [mean_std(summary, metric) for metric in ("dev", "test", "avg7")]
        deltas = [difference(summary, reference, metric) for metric in ("dev", "test", "avg7")]
        counts = [str(summary[metric][2]) if metric in summary else "0" for metric in ("dev", "avg7")]
        lines.append(f"| {cell} | {' | '.join(numbers)} | {' | '.join(deltas)} | {' | '.join(counts)} |")
    lines += ["", *signal_table(rows)]
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    return table


def signal_table(rows: dict[str, dict]) -> list[str]:
    """What the trainer logged, mean over seeds; the paper's bound needs cos mixed neg. < cos pos."""
    lines = [
        "Training signal, mean over seeds. The trainer logs 10-step means; *mean*: over all of them, *first*: steps"
        " 1-10, *last*: the last logged 10 steps. grad: norm of dLoss/d anchor embeddings; mixed share: its part"
        " from the mixed-negative columns; cos: mean cosine of the anchor with its positive / in-batch negatives /"
        " own mixed negative.",
        "",
        "| cell | grad mean | grad first | grad last | last/first | mixed share mean | cos pos. last |"
        " cos neg. last | cos mixed neg. last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, summary in rows.items():
        if "grad_first" not in summary:
            continue
        means = {metric: summary[metric][0] for metric in SIGNAL_METRICS if metric in summary}
        ratio = f"{means['grad_last'] / means['grad_first']:.3f}" if means["grad_first"] else "-"
        cells = [f"{means[metric]:.4f}" if metric in means else "-" for metric in SIGNAL_METRICS]
        lines.append(f"| {cell} | {' | '.join(cells[:3])} | {ratio} | {' | '.join(cells[3:])} |")
    return lines


def plot_grid(rows: dict[str, dict], sweep_lambdas: dict[str, float], best_cell: str, output_png: str) -> None:
    """Left: STS-B dev/test against λ (SimCSE is λ = 0); right: every other cell minus ``best_cell`` (the
    reference options at the λ they use), mean ± the cell's std."""
    figure = Figure(figsize=(12, 4.8))
    sweep_axis, cells_axis = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    swept = [cell for cell in sweep_lambdas if cell in rows]
    others = [cell for cell in rows if cell not in sweep_lambdas]
    for metric, label in (("dev", "STS-B dev"), ("test", "STS-B test")):
        sweep_axis.errorbar(
            [sweep_lambdas[cell] for cell in swept],
            [rows[cell][metric][0] for cell in swept],
            yerr=[rows[cell][metric][1] for cell in swept],
            marker="o",
            capsize=3,
            label=label,
        )
        offset = -0.2 if metric == "dev" else 0.2
        cells_axis.errorbar(
            [rows[cell][metric][0] - rows[best_cell][metric][0] for cell in others],
            [index + offset for index in range(len(others))],
            xerr=[rows[cell][metric][1] for cell in others],
            fmt="o",
            capsize=3,
            label=label,
        )
    sweep_axis.set(xlabel="λ (0 = SimCSE)", ylabel="Spearman x100", title="λ sweep (mean ± std over seeds)")
    cells_axis.set_yticks(range(len(others)), others, fontsize=8)
    cells_axis.invert_yaxis()
    cells_axis.axvline(0.0, color="grey", linewidth=1)
    cells_axis.set(xlabel=f"Spearman x100 minus {best_cell}", title="Options at the best λ (mean ± std over seeds)")
    for axis in (sweep_axis, cells_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output_png, dpi=120)


def plot_signal(args: argparse.Namespace, best_cell: str) -> None:
    seed = args.seeds[0]
    runs = {}
    for label, cell in (("SimCSE", "SimCSE"), ("MixCSE", best_cell)):
        directory = run_dir(args.output_dir, cell, seed)
        if os.path.isfile(trainer_state_path(directory)):
            runs[label] = load_log_history(directory)
    if len(runs) == 2:
        plot_gradient_signal(runs, os.path.join(args.output_dir, "gradient_signal.png"))


def main() -> None:
    parser = grid_parser(__doc__, BASE_CONFIG, "ablation")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--max_steps", type=int, help="shorten every run to this many steps (uniformly)")
    parser.add_argument("--keep_checkpoints", action="store_true", help="keep the intermediate checkpoints too")
    parser.add_argument(
        "--seven_task", action="store_true", help="also evaluate every finished run on the 7 STS tasks (~1 min each)"
    )
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    sweep = {"SimCSE": ["--mix_lambda", "0"], **{f"MixCSE λ={lam}": ["--mix_lambda", str(lam)] for lam in args.lambdas}}
    sweep_lambdas = {"SimCSE": 0.0, **{f"MixCSE λ={lam}": lam for lam in args.lambdas}}
    runs: dict[str, dict[int, dict]] = {}
    run_cells(sweep, args, runs)
    mixcse_runs = {cell: seeds for cell, seeds in runs.items() if cell.startswith("MixCSE")}
    best_cell = None
    if mixcse_runs:
        best_cell = max(mixcse_runs, key=lambda cell: statistics.mean(v["dev"] for v in mixcse_runs[cell].values()))
        best_lambda = float(best_cell.split("=")[1])
        print(f"best lambda by mean dev: {best_lambda}", flush=True)
        cells = {f"{cell} (λ={best_lambda})": flags for cell, flags in strategy_cells(best_lambda).items()}
        run_cells(cells, args, runs)
        plot_signal(args, best_cell)
    with open(os.path.join(args.output_dir, "runs.json"), "w", encoding="utf-8") as handle:
        json.dump(runs, handle, indent=1)
    rows = {cell: summarise(list(seeds.values())) for cell, seeds in runs.items()}
    reference_cell = f"MixCSE λ={REFERENCE_LAMBDA}"
    print(write_report(rows, args, reference_cell), flush=True)
    if best_cell:
        plot_grid(rows, sweep_lambdas, best_cell, os.path.join(args.output_dir, "ablation.png"))


if __name__ == "__main__":
    main()
