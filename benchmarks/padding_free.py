"""Padding-free training: throughput of packed vs padded rows vs sentence-transformers, and the quality of the
quick start trained packed vs padded.

``speed`` (default): the quick-start setting (all-MiniLM-L6-v2, batch 64, the wiki head, MixCSE λ 0.2, CLS) at
each ``--lengths`` (max_seq_length), float32 and bf16 autocast; each variant in its own process, alternating over
``--rounds``, median steady-state step time after a warm-up (``harness.run_variants``). Also the share of real
tokens in the padded batches (two dropout views of 64 sentences) and in the packed rows.

``decoder``: the same comparison for a decoder: a randomly initialised Qwen3 of all-MiniLM-L6-v2's size
(``harness.MINILM_SIZED_QWEN3``) with that model's vocabulary as a decoder tokenizer (no template, EOS appended),
``last`` pooling, padded vs packed (causal mask inside each packed sentence). Its config sets attention_dropout
0.1, since the unsupervised objective needs dropout (the speed does not depend on it); sentence-transformers is
left out (its SimCSE recipe pools [CLS]).

``quality``: ``run_mixcse.py configs/quickstart.yaml`` with and without ``--padding_free true`` for each seed (CLS
without MLP, no evaluation during training, no best-model selection), then STS-B dev/test of the final model.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/padding_free.py speed [--lengths 32 128 --rounds 2]
    MIXCSE_DATA_DIR=../shared/data python benchmarks/padding_free.py decoder [--lengths 32 128 --rounds 2]
    MIXCSE_DATA_DIR=../shared/data python benchmarks/padding_free.py quality [--seeds 42 43 44]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable

from harness import DEFAULT_MODEL, machine, run_variants, write_random_decoder

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
DATA_DIR = os.environ.get("MIXCSE_DATA_DIR", os.path.join(REPO_ROOT, "..", "shared", "data"))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
SPEED_VARIANTS = {
    "float32": ("mixcse_padded", "mixcse_packed", "st"),
    "bf16": ("mixcse_padded_bf16", "mixcse_packed_bf16", "st_bf16"),
}
"""Per precision: padded, packed, sentence-transformers."""
QUALITY_FLAGS = [
    *("--pooler_type", "cls_before_pooler", "--mlp_only_train", "false", "--eval_strategy", "no"),
    *("--load_best_model_at_end", "false", "--save_strategy", "no", "--disable_tqdm", "true"),
    *("--overwrite_output_dir", "true"),
]


def real_token_shares(
    max_seq_length: int, batch_size: int, batches: int, model: str = DEFAULT_MODEL
) -> dict[str, float]:
    """Real tokens / all tokens of the training forward: padded (2 views of each batch, padded to its longest
    sentence) and packed (rows of at most twice that length, the default pack_length), with ``model``'s
    tokenizer."""
    import torch
    from transformers import DataCollatorWithPadding

    from mixcse_hf.models.encoder import load_pretrained
    from mixcse_hf.models.packing import pack_features
    from mixcse_hf.training.data import load_corpus, tokenize_corpus

    _, tokenizer = load_pretrained(model)
    corpus = load_corpus(train_file=os.path.join(DATA_DIR, "wiki", "wiki1m_head.txt"))
    rows = tokenize_corpus(corpus, tokenizer, max_seq_length).shuffle(seed=42)
    collate = DataCollatorWithPadding(tokenizer)
    real = padded = packed = 0
    for index in range(batches):
        batch = collate([rows[i] for i in range(index * batch_size, (index + 1) * batch_size)])
        views = {name: torch.cat([tensor, tensor]) for name, tensor in batch.items()}
        real += int(views["attention_mask"].sum())
        padded += views["attention_mask"].numel()
        packed += pack_features(views, None, 0, torch.bool).features["input_ids"].numel()
    return {"padded": real / padded, "packed": real / packed}


def speed(args: argparse.Namespace) -> dict:
    variants = [name for precision in args.precisions for name in SPEED_VARIANTS[precision]]
    return measure_lengths(args, variants, [], DEFAULT_MODEL, print_speed)


def measure_lengths(
    args: argparse.Namespace, variants: list[str], options: list[str], model: str, report: Callable
) -> dict:
    """Each of ``variants`` at each ``--lengths``, with the real-token shares of its batches; ``report`` prints."""
    results = {}
    for length in args.lengths:
        flags = [*options, "--steps", str(args.steps), "--warmup", str(args.warmup), "--max_seq_length", str(length)]
        summary = run_variants(variants, args.rounds, flags)
        shares = real_token_shares(length, 64, args.warmup + args.steps, model)
        results[length] = {"summary": summary, "real_token_share": shares}
        report(length, summary, shares, args.precisions)
    return results


def print_speed(length: int, summary: dict, shares: dict[str, float], precisions: list[str]) -> None:
    print(f"\nmax_seq_length {length}: real tokens {shares['padded']:.1%} padded, {shares['packed']:.1%} packed")
    print(f"{'precision':<10} {'padded':>8} {'packed':>8} {'ST':>8} {'packed/padded':>14} {'packed/ST':>10}")
    for precision in precisions:
        padded, packed, st = (64 / summary[name]["median_step_seconds"] for name in SPEED_VARIANTS[precision])
        print(f"{precision:<10} {padded:>8.1f} {packed:>8.1f} {st:>8.1f} {packed / padded:>14.2f} {packed / st:>10.2f}")
    print("(sentences/s, median step)")


def decoder(args: argparse.Namespace) -> dict:
    from tests.conftest import decoder_tokenizer

    variants = [name for precision in args.precisions for name in SPEED_VARIANTS[precision][:2]]
    with tempfile.TemporaryDirectory() as model_dir:
        write_random_decoder(model_dir, decoder_tokenizer(), attention_dropout=0.1)
        options = ["--model", model_dir, "--pooler_type", "last"]
        return measure_lengths(args, variants, options, model_dir, print_decoder_speed)


def print_decoder_speed(length: int, summary: dict, shares: dict[str, float], precisions: list[str]) -> None:
    print(f"\nmax_seq_length {length}: real tokens {shares['padded']:.1%} padded, {shares['packed']:.1%} packed")
    print(f"{'precision':<10} {'padded':>8} {'packed':>8} {'packed/padded':>14} {'RSS padded':>11} {'RSS packed':>11}")
    for precision in precisions:
        padded, packed = (summary[name] for name in SPEED_VARIANTS[precision][:2])
        rates = [64 / side["median_step_seconds"] for side in (padded, packed)]
        print(
            f"{precision:<10} {rates[0]:>8.1f} {rates[1]:>8.1f} {rates[1] / rates[0]:>14.2f} "
            f"{padded['peak_rss_mb']:>8.0f} MB {packed['peak_rss_mb']:>8.0f} MB"
        )
    print("(sentences/s, median step; peak RSS)")


def quality(args: argparse.Namespace) -> dict:
    config = os.path.join(REPO_ROOT, "configs", "quickstart.yaml")
    scores: dict[str, list[dict[str, float]]] = {"padded": [], "packed": []}
    for seed in args.seeds:
        for side, extra in (("padded", []), ("packed", ["--padding_free", "true"])):
            directory = os.path.join(args.output_dir, f"{side}_seed{seed}")
            command = [sys.executable, os.path.join(REPO_ROOT, "run_mixcse.py"), config, "--output_dir", directory]
            process = subprocess.run(
                [*command, "--seed", str(seed), *QUALITY_FLAGS, *extra], capture_output=True, text=True
            )
            if process.returncode != 0:
                sys.exit(f"error: {side} seed {seed} failed:\n{process.stderr[-3000:]}")
            with open(os.path.join(directory, "sts_results.json"), encoding="utf-8") as handle:
                saved = json.load(handle)
            result = {
                **saved["stsb_spearman"]["cls_before_pooler"]["trained"],
                "train_loss": saved["train"]["train_loss"],
            }
            scores[side].append(result)
            dev, test, loss = result["dev"], result["test"], result["train_loss"]
            print(f"seed {seed} {side}: dev {dev:.2f} test {test:.2f} loss {loss:.4f}", flush=True)
    print(f"\n{'':<8} {'STS-B dev':>16} {'STS-B test':>16}")
    for side, runs in scores.items():
        cells = [
            f"{statistics.mean(r[s] for r in runs):.2f} ± {statistics.stdev(r[s] for r in runs):.2f}"
            for s in ("dev", "test")
        ]
        print(f"{side:<8} {cells[0]:>16} {cells[1]:>16}")
    return {"seeds": args.seeds, "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["speed", "decoder", "quality"], default="speed")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--precisions", nargs="+", choices=list(SPEED_VARIANTS), default=list(SPEED_VARIANTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "outputs", "padding_free"))
    args = parser.parse_args()
    results = {"speed": speed, "decoder": decoder, "quality": quality}[args.part](args)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"padding_free_{args.part}.json"), "w", encoding="utf-8") as handle:
        json.dump({"machine": machine(), "options": vars(args), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
