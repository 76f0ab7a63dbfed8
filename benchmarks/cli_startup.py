"""How long the command-line tools take to refuse bad arguments: ``mixcse-encode`` on an existing OUTPUT, and
``run_mixcse.py configs/quickstart.yaml --max_steps 10 --save_steps 10`` (a save interval that the best-model
keeping cannot use). Each refusal runs in a fresh process, ``--rounds`` times; the wall time from start to exit
is recorded with the exit status and the last line of stderr. ``--repo`` times another checkout (e.g. an older
commit, for a before/after); its own ``mixcse_hf`` is imported.

    python benchmarks/cli_startup.py [--rounds 5] [--repo PATH --label TEXT] [--output FILE.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from harness import machine

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO_ROOT, "benchmarks", "results", "cli_startup.json")


def encode_module(repo: str) -> str:
    """The module of ``mixcse-encode`` in the checkout ``repo`` (``mixcse_hf.encode`` before the cli package)."""
    return (
        "mixcse_hf.cli.encode"
        if os.path.isfile(os.path.join(repo, "mixcse_hf", "cli", "encode.py"))
        else "mixcse_hf.encode"
    )


def refusals(scratch: str, repo: str) -> dict[str, list[str]]:
    """Command lines (relative to the checkout ``repo``) that stop at an argument check."""
    sentences, existing = os.path.join(scratch, "sentences.txt"), os.path.join(scratch, "existing.npy")
    with open(sentences, "w", encoding="utf-8") as handle:
        handle.write("A man plays a guitar.\n")
    with open(existing, "wb") as handle:
        handle.write(b"keep")
    return {
        "mixcse-encode, OUTPUT exists": [
            *(sys.executable, "-m", encode_module(repo), "sentence-transformers/all-MiniLM-L6-v2", sentences, existing)
        ],
        "run_mixcse.py, save_steps not a multiple of eval_steps": [
            *(sys.executable, "run_mixcse.py", "configs/quickstart.yaml", "--max_steps", "10", "--save_steps", "10")
        ],
    }


def timed(command: list[str], repo: str, scratch: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": repo, "MIXCSE_DATA_DIR": os.environ.get("MIXCSE_DATA_DIR", "data")}
    start = time.perf_counter()
    process = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    last_line = (process.stderr.strip().splitlines() or [""])[-1].replace(scratch, "SCRATCH")
    return {"seconds": round(seconds, 2), "status": process.returncode, "stderr": last_line[:200]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repo", default=REPO_ROOT, help="the checkout to time (default: this one)")
    parser.add_argument("--label", default="this checkout", help="what --repo is, for the results (e.g. a commit)")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    with tempfile.TemporaryDirectory() as scratch:
        commands = refusals(scratch, repo)
        runs: dict[str, list[dict[str, object]]] = {name: [] for name in commands}
        for _ in range(args.rounds):  # the commands alternate, so a busy moment of the machine hits both
            for name, command in commands.items():
                runs[name].append(timed(command, repo, scratch))
    summary = {
        name: {
            "median_seconds": statistics.median(run["seconds"] for run in results),
            "min_seconds": min(run["seconds"] for run in results),
            "statuses": sorted({run["status"] for run in results}),
            "stderr": results[-1]["stderr"],
        }
        for name, results in runs.items()
    }
    for name, row in summary.items():
        print(f"{name}: median {row['median_seconds']:.2f} s, min {row['min_seconds']:.2f} s, exit {row['statuses']}")
        print(f"  {row['stderr']}")
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "repo": args.label,
        "rounds": args.rounds,
        "summary": summary,
        "runs": runs,
    }
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
