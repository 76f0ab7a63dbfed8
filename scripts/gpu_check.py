"""GPU check: a short bf16 MixCSE training of a bert-base-sized encoder (random init, synthetic sentences: no
downloads), printing sentences/s and peak GPU memory. Called by scripts/gpu_check.sh.

    python scripts/gpu_check.py [--steps 60] [--batch_size 64] [--max_seq_length 32] [--padding_free] [--smoke]

``--smoke`` runs 2 steps of a small encoder on the CPU in float32, to check the script itself.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from harness import timed_training

VOCABULARY = (
    "the a of to and in is was for on with as by at from it that his her which were are an be this their has city "
    "river music film team war school church king party state village year season album song world game"
)


def synthetic_corpus(path: Path, lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = VOCABULARY.split()
    text = "\n".join(" ".join(rng.choices(words, k=rng.randint(8, 40))) for _ in range(lines))
    path.write_text(text + "\n", encoding="utf-8")


def wordpiece_tokenizer(corpus: Path, directory: Path) -> None:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train([str(corpus)], trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=32)
    parser.add_argument("--gradcache_mini_batch_size", type=int, default=None)
    parser.add_argument("--padding_free", action="store_true", help="pack the rows without pad tokens")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.batch_size = 2, 1, 8
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke to check the script on a CPU")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic_corpus(root / "corpus.txt", lines=(args.steps + args.warmup + 1) * args.batch_size)
        wordpiece_tokenizer(root / "corpus.txt", root / "model")
        size = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
        config = BertConfig(vocab_size=2000, **(size if args.smoke else {}))  # default BertConfig = bert-base
        BertModel(config).save_pretrained(root / "model")
        flags = [
            "--model_name_or_path", str(root / "model"), "--train_file", str(root / "corpus.txt"),
            "--output_dir", str(root / "out"), "--per_device_train_batch_size", str(args.batch_size),
            "--max_seq_length", str(args.max_seq_length), "--max_steps", str(args.steps + args.warmup),
            "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none", "--logging_steps", "1000",
            "--disable_tqdm", "true", "--pooler_type", "cls",
            *(["--use_cpu", "true"] if args.smoke else ["--bf16", "true"]),
            *(["--gradcache_mini_batch_size", str(args.gradcache_mini_batch_size)] if args.gradcache_mini_batch_size
              else []),
            *(["--padding_free", "true"] if args.padding_free else []),
        ]  # fmt: skip
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        step_seconds, model = timed_training(flags)
    seconds = statistics.median(step_seconds[args.warmup :])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; encoder: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    gradcache = (
        f", GradCache mini-batches of {args.gradcache_mini_batch_size}" if args.gradcache_mini_batch_size else ""
    )
    packed = ", padding-free" if args.padding_free else ""
    precision = "float32" if args.smoke else "bf16"
    print(f"batch {args.batch_size} x length {args.max_seq_length}, {precision}{gradcache}{packed}")
    print(f"median step: {seconds:.4f} s -> {args.batch_size / seconds:.1f} sentences/s")
    if torch.cuda.is_available():
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
