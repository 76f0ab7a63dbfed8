"""GradCache's time overhead where plain training fits in memory: plain MixCSE vs CachedLoss with mini-batches of
64 and 128 sentences, alternating in one invocation (machine noise hits all three), all-MiniLM-L6-v2, float32.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/gradcache_overhead.py [--batch_size 256] [--max_seq_length 32]
        [--rounds 2] [--steps 3] [--warmup 1] [--output F]
    MIXCSE_DATA_DIR=../shared/data python benchmarks/gradcache_overhead.py --in_process [--rounds 5]

The default runs whole Trainer steps, one process per variant and round. ``--in_process`` times only the loss's
forward + backward (one batch, the parameters' gradients) in one process, the variants alternating call by call,
and also times a forward pass with and without a graph: the overhead's floor is (k - 1) / k of the no-graph
forward for k mini-batches. Prints each variant's median and its overhead over plain; writes the JSON to
``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from harness import DEFAULT_MODEL, machine, run_variants

RESULTS = os.path.join(os.path.dirname(__file__), "results", "gradcache_overhead.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--max_seq_length", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--in_process", action="store_true", help="time the loss's forward + backward only")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    if args.in_process:
        in_process(args)
        return
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


def in_process(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mixcse_hf.losses import MixCSELoss
    from mixcse_hf.losses.cached import CachedLoss
    from mixcse_hf.models.batch import BatchEmbedder, embed_batch
    from mixcse_hf.models.encoder import resolve_model_path

    path = resolve_model_path(DEFAULT_MODEL)
    model, tokenizer = AutoModel.from_pretrained(path).train(), AutoTokenizer.from_pretrained(path)
    corpus = os.path.join(os.environ.get("MIXCSE_DATA_DIR", "../shared/data"), "wiki", "wiki1m_head.txt")
    with open(corpus, encoding="utf-8") as handle:
        sentences = handle.read().splitlines()[: args.batch_size]
    features = tokenizer(sentences, padding=True, truncation=True, max_length=args.max_seq_length, return_tensors="pt")
    batch, loss = {"text": dict(features)}, MixCSELoss(log_gradient_signal=True)

    def plain() -> None:
        loss(*embed_batch(model, batch, "cls")).backward()

    def cached(size: int) -> None:
        CachedLoss(loss, size)(BatchEmbedder(model, "cls"), batch).backward()

    def forward(graph: bool) -> None:
        with torch.set_grad_enabled(graph):
            embed_batch(model, batch, "cls")

    variants = {
        "plain": plain,
        "gradcache_64": lambda: cached(64),
        "gradcache_128": lambda: cached(128),
        "forward_with_graph": lambda: forward(True),
        "forward_no_graph": lambda: forward(False),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up
        run()
        model.zero_grad(set_to_none=True)
    for round_index in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()))
    plain_median = statistics.median(seconds["plain"])
    for name, values in seconds.items():
        median = statistics.median(values)
        overhead = 100 * (median / plain_median - 1)
        print(f"{name:<19} {median:>6.2f} s (median of {len(values)})  {overhead:+6.1f}% vs plain")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"machine": machine(), "options": vars(args), "seconds": seconds}, handle, indent=2)


if __name__ == "__main__":
    main()
