"""LoRA vs full fine-tuning on the quick-start model (all-MiniLM-L6-v2, MixCSE, batch 64, length 32, wiki head):
trainable parameters, peak RSS and sentences/s, alternating runs in one invocation.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/lora_vs_full.py [--rounds 2] [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os

from harness import machine, run_variants

RESULTS = os.path.join(os.path.dirname(__file__), "results", "lora_vs_full.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    options = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    summary = run_variants(["mixcse", "lora"], args.rounds, options)
    print(f"\n{'variant':<22} {'trainable params':>17} {'sentences/s':>12} {'s/step':>7} {'peak RSS MB':>12}")
    for name, label in (("mixcse", "full fine-tuning"), ("lora", "LoRA r=8 (+ MLP)")):
        row = summary[name]
        print(
            f"{label:<22} {row['trainable_params']:>17,} {64 / row['median_step_seconds']:>12.1f} "
            f"{row['median_step_seconds']:>7.3f} {row['peak_rss_mb']:>12.0f}"
        )
    ratio = summary["mixcse"]["median_step_seconds"] / summary["lora"]["median_step_seconds"]
    print(f"LoRA speed-up: {ratio:.2f}x")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump({"machine": machine(), "options": vars(args), "summary": summary}, handle, indent=2)


if __name__ == "__main__":
    main()
