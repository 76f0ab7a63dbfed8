"""GradCache's time overhead where plain training fits in memory: plain MixCSE vs CachedLoss with mini-batches of
64 and 128 sentences, alternating in one invocation (machine noise hits all three), all-MiniLM-L6-v2, float32.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/gradcache_overhead.py [--batch_size 256] [--max_seq_length 32]
        [--rounds 2] [--steps 3] [--warmup 1] [--output F]

Prints each variant's median step time and its overhead over plain; writes the JSON to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os

from harness import machine, run_variants

RESULTS = os.path.join(os.path.dirname(__file__), "results", "gradcache_overhead.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--max_seq_length", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    options = [
        *("--batch_size", str(args.batch_size), "--max_seq_length", str(args.max_seq_length)),
        *("--steps", str(args.steps), "--warmup", str(args.warmup)),
    ]
    summary = run_variants(["mixcse", "gradcache_64", "gradcache_128"], args.rounds, options)
    plain = summary["mixcse"]["median_step_seconds"]
    for variant, result in summary.items():
        seconds = result["median_step_seconds"]
        print(
            f"{variant:<14} {seconds:>7.2f} s/step {args.batch_size / seconds:>6.1f} sentences/s "
            f"overhead {100 * (seconds / plain - 1):+5.1f}%  peak RSS {result['peak_rss_mb']:.0f} MB"
        )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"machine": machine(), "options": vars(args), "summary": summary}, handle, indent=2)


if __name__ == "__main__":
    main()
