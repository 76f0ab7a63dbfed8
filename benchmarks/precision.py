"""Step time of the quick start's training in float32, bf16 and ``precision: auto``, on this CPU as it is and with
oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``: what a CPU without AMX or AVX512-BF16 does, bf16 emulated),
each measurement in its own process, alternating within one invocation so the ratios share the machine's state.
The quick start's setting: all-MiniLM-L6-v2, mean pooling, batch 64, length 32, the wiki head.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/precision.py [--rounds 1 --steps 5 --warmup 2]

Prints the CPU (model and the flags that matter), what ``auto`` chose in each setting, seconds per step and the
ratios to float32 in the same setting; writes ``results/precision.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

from harness import machine, run_child

RESULTS = os.path.join(os.path.dirname(__file__), "results", "precision.json")
SETTINGS = {"native": {}, "oneDNN limited to AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
VARIANTS = {"fp32": "mixcse", "bf16": "mixcse_bf16", "auto": "mixcse_auto"}
QUICK_START = ["--pooler_type", "avg", "--mlp_only_train", "false"]


def auto_choice(environment: dict[str, str]) -> str:
    """What ``precision: auto`` picks on the CPU under ``environment`` (a fresh process: oneDNN reads it once)."""
    code = "from mixcse_hf.training.precision import automatic_precision; print(automatic_precision('cpu').name)"
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **environment}
    )
    return process.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    options = ["--steps", str(args.steps), "--warmup", str(args.warmup), *QUICK_START]
    steps: dict[str, dict[str, list[float]]] = {setting: {name: [] for name in VARIANTS} for setting in SETTINGS}
    for round_index in range(args.rounds):
        for setting, environment in SETTINGS.items():
            for name, variant in VARIANTS.items():
                seconds = run_child(variant, options, environment)["step_seconds"]
                steps[setting][name] += seconds
                print(f"round {round_index + 1} {setting} {name}: {statistics.median(seconds):.2f} s/step", flush=True)
    measured_on = machine()
    cpu = measured_on["cpu"]
    print(f"\nCPU: {cpu['model']}, {os.cpu_count()} cores, flags: {' '.join(cpu['flags']) or 'none of interest'}")
    table = {}
    for setting, environment in SETTINGS.items():
        medians = {name: statistics.median(values) for name, values in steps[setting].items()}
        chosen = auto_choice(environment)
        table[setting] = {
            "auto_chose": chosen,
            "median_step_seconds": medians,
            "ratio_to_fp32": {name: medians[name] / medians["fp32"] for name in VARIANTS},
        }
        fp32 = medians["fp32"]
        ratios = ", ".join(f"{name} {seconds:.2f} s ({seconds / fp32:.2f}x)" for name, seconds in medians.items())
        print(f"{setting}: auto chose {chosen}; {ratios}")
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": measured_on,
        "setting": "all-MiniLM-L6-v2, mean pooling, MixCSE, batch 64, length 32",
        "steps_per_measurement": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "results": table,
        "step_seconds": steps,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
