"""Training throughput: mixcse_hf (MixCSE and SimCSE modes) vs sentence-transformers' SimCSE recipe
(MultipleNegativesRankingLoss, anchor == positive, CLS pooling) vs the bare encoder floor (forward of the same
2N padded rows, backward, AdamW step). all-MiniLM-L6-v2, batch 64, length 32, the wiki head; each variant in
its own process, alternating, steady-state steps after a warm-up.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/train_throughput.py [--rounds 2 --steps 20 --warmup 3]
        [--variants mixcse simcse st floor] [-- extra run_mixcse flags for the mixcse/simcse runs]
"""

from __future__ import annotations

import argparse
import json
import os

from harness import machine, run_variants

RESULTS = os.path.join(os.path.dirname(__file__), "results", "train_throughput.json")
LABELS = {
    "mixcse": "mixcse_hf, MixCSE (lambda 0.2)",
    "simcse": "mixcse_hf, SimCSE mode",
    "st": "sentence-transformers 6.2 MNRL",
    "floor": "bare encoder fwd+bwd+AdamW",
    "lora": "mixcse_hf, MixCSE + LoRA r=8",
    "mixcse_bf16": "mixcse_hf, MixCSE, bf16 autocast",
    "st_bf16": "sentence-transformers, bf16 autocast",
    "st_mixcse": "sentence-transformers + our MixCSELoss",
    "st_mixcse_bf16": "sentence-transformers + MixCSELoss, bf16",
    "mixcse_masked": "mixcse_hf, MixCSE, duplicates masked",
    "mixcse_unmasked": "mixcse_hf, MixCSE, not masked",
    "mixcse_streaming_masked": "mixcse_hf, MixCSE, streamed, masked",
    "mixcse_streaming_unmasked": "mixcse_hf, MixCSE, streamed, not masked",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["mixcse", "simcse", "st", "floor"])
    parser.add_argument("--output", default=RESULTS)
    args, extra = parser.parse_known_args()
    options = ["--steps", str(args.steps), "--warmup", str(args.warmup), *extra]
    summary = run_variants(args.variants, args.rounds, options)
    print(f"\n{'variant':<34} {'sentences/s':>12} {'s/step':>8} {'peak RSS MB':>12}")
    for name in args.variants:
        row = summary[name]
        sentences = 64 / row["median_step_seconds"]
        print(f"{LABELS[name]:<34} {sentences:>12.1f} {row['median_step_seconds']:>8.3f} {row['peak_rss_mb']:>12.0f}")
    ratios = {}
    if "st" in summary:
        for name in ("mixcse", "simcse"):
            if name in summary:
                ratios[f"{name} vs st (speed)"] = (
                    summary["st"]["median_step_seconds"] / summary[name]["median_step_seconds"]
                )
    if "floor" in summary:
        for name in ("mixcse", "simcse"):
            if name in summary:
                ratios[f"{name} step / floor"] = (
                    summary[name]["median_step_seconds"] / summary["floor"]["median_step_seconds"]
                )
    if "mixcse_bf16" in summary and "st" in summary:
        ratios["mixcse_bf16 vs st defaults (speed)"] = (
            summary["st"]["median_step_seconds"] / summary["mixcse_bf16"]["median_step_seconds"]
        )
    if "mixcse_bf16" in summary and "st_bf16" in summary:
        ratios["mixcse_bf16 vs st_bf16 (speed)"] = (
            summary["st_bf16"]["median_step_seconds"] / summary["mixcse_bf16"]["median_step_seconds"]
        )
    if "mixcse" in summary and "simcse" in summary:
        ratios["mixcse slowdown vs simcse"] = (
            summary["mixcse"]["median_step_seconds"] / summary["simcse"]["median_step_seconds"] - 1
        )
    if "st_mixcse" in summary:
        for name in ("mixcse", "st"):
            if name in summary:
                ratios[f"{name} vs st_mixcse (speed)"] = (
                    summary["st_mixcse"]["median_step_seconds"] / summary[name]["median_step_seconds"]
                )
    for masked, unmasked in (
        ("mixcse_masked", "mixcse_unmasked"),
        ("mixcse_streaming_masked", "mixcse_streaming_unmasked"),
    ):
        if masked in summary and unmasked in summary:
            ratios[f"{masked} step / {unmasked}"] = (
                summary[masked]["median_step_seconds"] / summary[unmasked]["median_step_seconds"]
            )
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(
            {"machine": machine(), "options": vars(args), "extra": extra, "ratios": ratios, "summary": summary},
            handle,
            indent=2,
        )


if __name__ == "__main__":
    main()
