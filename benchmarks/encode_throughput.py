"""Encoding throughput: mixcse_hf's SentenceEncoder.encode (padded and padding-free) vs
SentenceTransformer.encode on the STS-B dev and test sentences, all-MiniLM-L6-v2 with its mean pooling,
alternating in one process; also checks that they give the same embeddings.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/encode_throughput.py [--rounds 3] [--batch_size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from harness import DEFAULT_MODEL, machine
from sentence_transformers import SentenceTransformer

from mixcse_hf.evaluation.sts_data import load_stsb
from mixcse_hf.models.encoder import SentenceEncoder, resolve_model_path

RESULTS = os.path.join(os.path.dirname(__file__), "results", "encode_throughput.json")
TWO_TOOLS = ("mixcse_hf SentenceEncoder.encode", "SentenceTransformer.encode")


def sts_sentences(senteval_dir: str) -> list[str]:
    sentences: list[str] = []
    for split in ("dev", "test"):
        pairs = load_stsb(split, senteval_dir)
        sentences += pairs.sentences1 + pairs.sentences2
    return list(dict.fromkeys(sentences))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    senteval_dir = os.path.join(os.environ.get("MIXCSE_DATA_DIR", "../shared/data"), "senteval")
    sentences = sts_sentences(senteval_dir)
    ours = SentenceEncoder.from_pretrained(DEFAULT_MODEL)  # its sentence-transformers pooling: mean
    packed = SentenceEncoder.from_pretrained(DEFAULT_MODEL)
    packed.padding_free = True
    theirs = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")
    encoders = {
        "mixcse_hf SentenceEncoder.encode": lambda: ours.encode(sentences, batch_size=args.batch_size),
        "the same, padding_free": lambda: packed.encode(sentences, batch_size=args.batch_size),
        "SentenceTransformer.encode": lambda: theirs.encode(
            sentences, batch_size=args.batch_size, convert_to_tensor=True, normalize_embeddings=False
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    outputs = {}
    for round_index in range(args.rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            outputs[name] = encode()
            seconds[name].append(time.perf_counter() - start)
            print(f"round {round_index + 1}/{args.rounds} {name}: {seconds[name][-1]:.2f} s", flush=True)
    # all-MiniLM-L6-v2's sentence-transformers pipeline ends in Normalize: compare unit vectors.
    a, b = (torch.nn.functional.normalize(outputs[name].float().cpu(), dim=-1) for name in TWO_TOOLS)
    packed_difference = (outputs["the same, padding_free"] - outputs[TWO_TOOLS[0]]).abs().max().item()
    cosine = (a * b).sum(dim=-1)
    summary = {name: len(sentences) / statistics.median(values) for name, values in seconds.items()}
    print(f"\n{len(sentences)} unique STS-B dev+test sentences, batch {args.batch_size}, pooler {ours.pooler_type}")
    for name, rate in summary.items():
        print(f"{name:<34} {rate:>8.1f} sentences/s")
    ratio = summary[TWO_TOOLS[0]] / summary[TWO_TOOLS[1]]
    print(f"speed ratio (ours / sentence-transformers): {ratio:.3f}")
    packed_ratio = summary["the same, padding_free"] / summary[TWO_TOOLS[0]]
    print(f"padding_free / padded: {packed_ratio:.3f}; max abs difference {packed_difference:.2e}")
    difference = (a - b).abs().max().item()
    print(f"unit embeddings: max abs difference {difference:.2e}, min cosine {cosine.min().item():.6f}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        record = {"machine": machine(), "options": vars(args), "sentences": len(sentences), "seconds": seconds}
        record.update(sentences_per_second=summary, ratio=ratio, max_abs_difference=difference)
        record.update(padding_free_ratio=packed_ratio, padding_free_max_abs_difference=packed_difference)
        json.dump(record, handle, indent=2)


if __name__ == "__main__":
    main()
