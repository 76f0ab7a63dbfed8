"""The sentence-transformers example of docs/sentence_transformers.md, run as written (all-MiniLM-L6-v2, the wiki
head, one epoch), only its data path and output directory moved: STS-B dev and test Spearman x100 of the model it
starts from and of the model it saves, scored by the same evaluator, and the loss of the start model on the first
batches of the corpus with the example's pooling and with MiniLM's own (mean pooling + Normalize), which barely
trains. One seed (the Trainer's default, 42). Writes ``benchmarks/results/st_example.json``.

    MIXCSE_DATA_DIR=../shared/data python benchmarks/st_example.py [--loss_batches 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

DATA_DIR = os.environ.get("MIXCSE_DATA_DIR", os.path.join(REPO_ROOT, "..", "shared", "data"))
PAGE = os.path.join(REPO_ROOT, "docs", "sentence_transformers.md")
HEADING = "## Use with sentence-transformers"
RESULTS = os.path.join(REPO_ROOT, "benchmarks", "results", "st_example.json")


def example_code(output_dir: str) -> str:
    """The page's example, reading the corpus from ``DATA_DIR`` and writing under ``output_dir``."""
    with open(PAGE, encoding="utf-8") as handle:
        text = handle.read()
    code = re.search(r"^" + re.escape(HEADING) + r"\n.*?^```python\n(.*?)^```", text, flags=re.S | re.M).group(1)
    corpus = os.path.join(DATA_DIR, "wiki", "wiki1m_head.txt")
    return code.replace('"../shared/data/wiki/wiki1m_head.txt"', repr(corpus)).replace(
        '"outputs/st-mixcse', json.dumps(output_dir)[:-1]
    )


def start_losses(batches: int) -> dict[str, float]:
    """The example's MixCSE loss (training mode: dropout on) of the start model on the first ``batches`` batches of
    64, with [CLS] pooling and with MiniLM's own mean pooling + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from mixcse_hf.losses.sentence_transformers import MixCSELoss
    from mixcse_hf.models.encoder import resolve_model_path
    from mixcse_hf.training.data import load_corpus

    path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    transformer = Transformer(path, max_seq_length=32)
    models = {
        "cls": SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "cls")]),
        "mean_normalize": SentenceTransformer(path),
    }
    sentences = load_corpus(train_file=os.path.join(DATA_DIR, "wiki", "wiki1m_head.txt"))["text"][: 64 * batches]
    losses = {}
    for name, model in models.items():
        torch.manual_seed(42)
        loss, total = MixCSELoss(model, temp=0.05, mix_lambda=0.2), 0.0
        model.train()
        with torch.no_grad():
            for start in range(0, len(sentences), 64):
                features = model.preprocess(sentences[start : start + 64])
                total += loss([features], None).item()
        losses[name] = total / batches
    return losses


def stsb(path: str, pooler: str | None = None) -> dict[str, float]:
    from mixcse_hf.evaluation.sts import sts_spearman
    from mixcse_hf.evaluation.sts_data import load_stsb
    from mixcse_hf.models.encoder import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(path, pooler)
    senteval = os.path.join(DATA_DIR, "senteval")
    return {split: round(sts_spearman(encoder, load_stsb(split, senteval)), 2) for split in ("dev", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(REPO_ROOT, "outputs", "st_example"))
    parser.add_argument("--loss_batches", type=int, default=5, help="batches of 64 for the start losses")
    args = parser.parse_args()
    from mixcse_hf.models.encoder import resolve_model_path

    results: dict[str, object] = {"start_loss": start_losses(args.loss_batches)}
    print(f"start loss: {results['start_loss']}", flush=True)
    results["start"] = stsb(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), "cls_before_pooler")
    print(f"start model ([CLS]): {results['start']}", flush=True)
    started = time.perf_counter()
    exec(compile(example_code(args.output_dir), PAGE, "exec"), {})
    results["training_seconds"] = round(time.perf_counter() - started, 1)
    results["trained"] = stsb(os.path.join(args.output_dir, "final"))
    print(f"trained: {results['trained']} ({results['training_seconds']} s)", flush=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
