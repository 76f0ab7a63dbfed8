"""The quick start trained two ways, several seeds each: ``run_mixcse.py`` and sentence-transformers'
``SentenceTransformerTrainer`` with ``mixcse_hf.losses.sentence_transformers.MixCSELoss``. Same setting on both
sides: all-MiniLM-L6-v2, the 11,913-sentence wiki head, one epoch, batch 64, length 32, lr 3e-5 (linear decay, no
warm-up), λ 0.2, τ 0.05, bf16 autocast, CLS pooling without the MLP (sentence-transformers' CLS), no best-model
selection; the final model of each run is scored on STS-B dev and test by the same evaluator. Resumable: a run
whose results file exists is kept. Prints and writes ``results.md`` into ``--output_dir``.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/st_quickstart.py [--seeds 42 43 44]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

DATA_DIR = os.environ.get("MIXCSE_DATA_DIR", os.path.join(REPO_ROOT, "..", "shared", "data"))
RESULTS = "stsb.json"
SIDES = {"run_mixcse.py": "ours", "SentenceTransformerTrainer + MixCSELoss": "st"}
OUR_FLAGS = [
    *("--pooler_type", "cls_before_pooler", "--mlp_only_train", "false", "--eval_strategy", "no"),
    *("--load_best_model_at_end", "false", "--save_strategy", "no", "--disable_tqdm", "true"),
    *("--overwrite_output_dir", "true"),
]


def checked(command: list[str]) -> None:
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command[:3])}... failed:\n{process.stderr[-3000:]}")


def train_ours(seed: int, directory: str, max_steps: int) -> dict[str, float]:
    config = os.path.join(REPO_ROOT, "configs", "quickstart.yaml")
    command = [sys.executable, os.path.join(REPO_ROOT, "run_mixcse.py"), config, "--output_dir", directory]
    checked([*command, "--seed", str(seed), "--max_steps", str(max_steps), *OUR_FLAGS])
    with open(os.path.join(directory, "sts_results.json"), encoding="utf-8") as handle:
        return json.load(handle)["stsb_spearman"]["cls_before_pooler"]["trained"]


def train_st(seed: int, directory: str, max_steps: int) -> dict[str, float]:
    """SentenceTransformerTrainer with our loss (in this process), then STS-B dev/test of the saved model."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from mixcse_hf.evaluation.sts import sts_spearman
    from mixcse_hf.evaluation.sts_data import load_stsb
    from mixcse_hf.losses.sentence_transformers import MixCSELoss
    from mixcse_hf.models.encoder import SentenceEncoder, resolve_model_path
    from mixcse_hf.training.data import load_corpus

    transformer = Transformer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), max_seq_length=32)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "cls")])
    sentences = load_corpus(train_file=os.path.join(DATA_DIR, "wiki", "wiki1m_head.txt"))["text"]
    arguments = Arguments(
        output_dir=directory,
        per_device_train_batch_size=64,
        learning_rate=3e-5,
        num_train_epochs=1,
        max_steps=max_steps,
        seed=seed,
        bf16=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_drop_last=True,
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        disable_tqdm=True,
    )
    loss = MixCSELoss(model, temp=0.05, mix_lambda=0.2)
    SentenceTransformerTrainer(
        model=model, args=arguments, train_dataset=Dataset.from_dict({"text": sentences}), loss=loss
    ).train()
    model.save(directory)
    encoder = SentenceEncoder.from_pretrained(directory)  # a sentence-transformers folder: its own CLS pooling
    senteval = os.path.join(DATA_DIR, "senteval")
    return {split: round(sts_spearman(encoder, load_stsb(split, senteval)), 2) for split in ("dev", "test")}


def run(side: str, seed: int, args: argparse.Namespace) -> dict[str, float]:
    directory = os.path.join(args.output_dir, side, f"seed{seed}")
    path = os.path.join(directory, RESULTS)
    if not os.path.isfile(path):
        print(f"[{side} seed {seed}] training", flush=True)
        if side == "ours":
            write_results(directory, train_ours(seed, directory, args.max_steps))
        else:  # a process of its own, as the run_mixcse.py side has
            flags = ["--output_dir", args.output_dir, "--max_steps", str(args.max_steps)]
            checked([sys.executable, __file__, "--child", str(seed), *flags])
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_results(directory: str, values: dict[str, float]) -> None:
    with open(os.path.join(directory, RESULTS), "w", encoding="utf-8") as handle:
        json.dump(values, handle)


def report(results: dict[str, list[dict[str, float]]], seeds: list[int]) -> str:
    lines = [
        f"Seeds {seeds}; STS-B Spearman x100 of the final model (CLS without MLP), mean ± std over seeds.",
        "",
        "| trained with | STS-B dev | STS-B test | runs |",
        "|---|---|---|---|",
    ]
    for label, side in SIDES.items():
        runs = results[side]
        cells = [
            f"{statistics.mean(r[s] for r in runs):.2f} ± {statistics.stdev(r[s] for r in runs):.2f}"
            if len(runs) > 1
            else f"{runs[0][s]:.2f}"
            for s in ("dev", "test")
        ]
        lines.append(f"| {label} | {' | '.join(cells)} | {len(runs)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "outputs", "st_quickstart"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--max_steps", type=int, default=-1, help="shorten every run (a smoke test of the script)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        directory = os.path.join(args.output_dir, "st", f"seed{args.child}")
        write_results(directory, train_st(args.child, directory, args.max_steps))
        return
    results = {side: [run(side, seed, args) for seed in args.seeds] for side in SIDES.values()}
    table = report(results, args.seeds)
    with open(os.path.join(args.output_dir, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
