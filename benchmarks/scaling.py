"""Scaling: sentences/s and peak RSS of MixCSE training as the batch size and the maximum length grow, plain
vs GradCache (mini-batches of 64). all-MiniLM-L6-v2, the wiki head, one process per configuration.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/scaling.py [--batch_sizes 64 128 256 512]
        [--lengths 32 128] [--steps 3] [--warmup 1] [--mini_batch_size 64] [--max_plain_batch B] [--output F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from harness import machine, run_child

RESULTS = os.path.join(os.path.dirname(__file__), "results", "scaling.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mini_batch_size", type=int, default=64)
    parser.add_argument(
        "--max_plain_batch", type=int, default=None, help="skip plain runs above this batch (memory guard)"
    )
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    rows = []
    for length in args.lengths:
        for batch in args.batch_sizes:
            modes = {} if args.max_plain_batch and batch > args.max_plain_batch else {"plain": []}
            if batch > args.mini_batch_size:
                modes["gradcache"] = ["--gradcache_mini_batch_size", str(args.mini_batch_size)]
            for mode, flags in modes.items():
                options = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch_size", str(batch)]
                result = run_child("mixcse", [*options, "--max_seq_length", str(length), *flags])
                seconds = statistics.median(result["step_seconds"])
                row = {"max_seq_length": length, "batch_size": batch, "mode": mode, "step_seconds": seconds}
                row.update(sentences_per_second=batch / seconds, peak_rss_mb=result["peak_rss_mb"])
                rows.append(row)
                print(
                    f"length {length:>3} batch {batch:>3} {mode:<9} {row['sentences_per_second']:>7.1f} sentences/s "
                    f"{seconds:>7.2f} s/step {row['peak_rss_mb']:>7.0f} MB",
                    flush=True,
                )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"machine": machine(), "options": vars(args), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
