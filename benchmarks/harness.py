"""Benchmark harness: each measurement runs in its own process (so peak RSS is its own), variants alternate
within one invocation (so machine noise hits all of them), and the figures are steady-state step times.

    python benchmarks/harness.py child VARIANT [--steps N --warmup W --batch_size B --max_seq_length L ...]

prints one JSON line: seconds of each measured step, peak RSS (and peak GPU memory on CUDA), parameter counts.
``run_variants`` drives it. Variants: ``mixcse``, ``simcse``, ``lora``, ``mixcse_bf16``, ``simcse_bf16``,
``mixcse_auto``, ``gradcache_64``, ``gradcache_128``, ``mixcse_padded``, ``mixcse_padded_bf16``, ``mixcse_packed``,
``mixcse_packed_bf16``, ``mixcse_streaming``,
``mixcse_masked``, ``mixcse_unmasked``, ``mixcse_streaming_masked``, ``mixcse_streaming_unmasked`` (MixCSETrainer;
extra flags go to run_mixcse's parser), ``st`` and ``st_bf16`` (sentence-transformers' SimCSE recipe), ``st_mixcse``
and ``st_mixcse_bf16`` (SentenceTransformerTrainer with our sentence-transformers MixCSELoss) and ``floor`` and
``floor_bf16`` (the bare encoder). Everything runs on the GPU when there is one.
``write_random_encoder`` saves a random-init encoder (bert-base by default) and ``write_random_decoder`` a random-init
Qwen3 (all-MiniLM-L6-v2's size) to time without a download;
``encoder_training_flops`` counts a training step's FLOPs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import TrainerCallback

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
FP32, BF16 = ["--precision", "fp32"], ["--precision", "bf16"]
TRAINER_VARIANTS = {
    "mixcse": FP32,
    "simcse": ["--mix_lambda", "0", *FP32],
    "lora": ["--use_lora", "true", *FP32],
    "mixcse_bf16": BF16,
    "mixcse_auto": [],
    "simcse_bf16": ["--mix_lambda", "0", *BF16],
    "gradcache_64": ["--gradcache_mini_batch_size", "64", *FP32],
    "gradcache_128": ["--gradcache_mini_batch_size", "128", *FP32],
    "mixcse_padded": ["--padding_free", "false", *FP32],
    "mixcse_padded_bf16": ["--padding_free", "false", *BF16],
    "mixcse_packed": ["--padding_free", "true", *FP32],
    "mixcse_packed_bf16": ["--padding_free", "true", *BF16],
    "mixcse_streaming": ["--streaming", "true", *FP32],
    "mixcse_masked": ["--mask_duplicates", "true", *FP32],
    "mixcse_unmasked": ["--mask_duplicates", "false", *FP32],
    "mixcse_streaming_masked": ["--streaming", "true", "--mask_duplicates", "true", *FP32],
    "mixcse_streaming_unmasked": ["--streaming", "true", "--mask_duplicates", "false", *FP32],
}
"""Variants without a precision train in float32, ``_bf16`` ones in bf16, ``mixcse_auto`` as precision auto picks."""


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a host clock read after it times the work itself."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Wall time between consecutive optimizer steps (data loading, forward, backward, optimizer, callbacks); on a
    GPU each step's end waits for its kernels (the same for every variant)."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.first_step_end: float | None = None
        """Wall-clock time (``time.time()``) at the end of the first optimizer step."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.ends.append(time.perf_counter())
        if self.first_step_end is None:
            self.first_step_end = time.time()

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.ends)]


def measurement(step_seconds: list[float], warmup: int, model: torch.nn.Module) -> dict:
    from mixcse_hf.models.lora import count_parameters

    trainable, total = count_parameters(model)
    return {"step_seconds": step_seconds[warmup:], "trainable_params": trainable, "total_params": total}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb() -> float | None:
    """This process's peak of allocated GPU memory (MiB), ``None`` without CUDA."""
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def write_random_encoder(directory: str, tokenizer_path: str, seed: int = 0, **shape: int) -> None:
    """Save a randomly initialised BERT (``shape`` overrides bert-base's sizes) with the tokenizer at
    ``tokenizer_path`` into ``directory``, in float32: a model to time without downloading one."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(tokenizer), **{**BERT_BASE, **shape})).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


MINILM_SIZED_QWEN3 = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
}
"""A Qwen3 of all-MiniLM-L6-v2's width, depth, heads and feed-forward size (2 KV heads, as Qwen3 groups queries)."""


def write_random_decoder(directory: str, tokenizer, seed: int = 0, **config: float) -> None:
    """Save a randomly initialised Qwen3 (:data:`MINILM_SIZED_QWEN3`; ``config`` adds or overrides settings) with
    ``tokenizer`` (a decoder's: no template, an EOS token) into ``directory``, in float32."""
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), **{**MINILM_SIZED_QWEN3, **config})).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def encoder_forward_flops(config, rows: int, length: int) -> float:
    """Forward FLOPs of a BERT-style encoder over ``rows`` padded rows of ``length`` tokens: per layer and token,
    2 FLOPs per weight of the Q, K, V, output and two feed-forward matrices (4·d² + 2·d·d_ff weights), plus
    attention's scores and weighted sum, 2·2·length·d per token. Embeddings, norms, softmax, the pooler and the
    loss are left out (under 1% at bert-base, length 32)."""
    d, d_ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * (4 * d * d + 2 * d * d_ff) + 4 * length * d
    return float(layers * rows * length * per_token)


def encoder_training_flops(config, rows: int, length: int, forwards: int = 3) -> float:
    """A training step's FLOPs: backward ≈ 2 forwards, so 3 forwards' worth (4 with GradCache, which embeds the
    batch once more without a graph)."""
    return forwards * encoder_forward_flops(config, rows, length)


def timed_training(flags: list[str], timer: StepTimer | None = None) -> tuple[list[float], torch.nn.Module]:
    """Train through MixCSETrainer with run_mixcse flags (no output written beyond ``--output_dir``); returns the
    seconds of every step and the trained model. ``timer``: the step timer to use (read afterwards)."""
    from mixcse_hf.training.build import build_model, build_training_data
    from mixcse_hf.training.config import parse_run_args
    from mixcse_hf.training.trainer import MixCSETrainer

    model_args, data_args, training_args = parse_run_args(flags)
    model, tokenizer = build_model(model_args, training_args, resuming=False)
    timer = timer or StepTimer()
    data = build_training_data(data_args, training_args, tokenizer)
    trainer = MixCSETrainer(
        model=model,
        args=training_args,
        train_dataset=data.dataset,
        processing_class=tokenizer,
        data_collator=data.collator,
        callbacks=[timer],
    )
    trainer.train()
    return timer.step_seconds(), model


def trainer_child(variant: str, options: argparse.Namespace, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as output_dir:
        flags = [
            "--model_name_or_path", options.model, "--train_file", options.train_file, "--output_dir", output_dir,
            "--per_device_train_batch_size", str(options.batch_size), "--max_seq_length", str(options.max_seq_length),
            "--max_steps", str(options.warmup + options.steps), "--learning_rate", "3e-5", "--pooler_type", "cls",
            "--mlp_only_train", "true", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
            "--logging_steps", "1000", "--disable_tqdm", "true", "--seed", "42",
            *TRAINER_VARIANTS[variant], *extra,
        ]  # fmt: skip
        timer = StepTimer()
        step_seconds, model = timed_training(flags, timer)
    return {**measurement(step_seconds, options.warmup, model), "first_step_end": timer.first_step_end}


def sentence_transformers_child(options: argparse.Namespace, bf16: bool = False, mixcse: bool = False) -> dict:
    """sentence-transformers' SimCSE recipe: MultipleNegativesRankingLoss with anchor == positive, CLS pooling;
    its defaults unless ``bf16`` (then CPU bf16 autocast, as ``mixcse_bf16``). ``mixcse``: our
    sentence-transformers loss (λ 0.2) on the single text column instead."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from mixcse_hf.losses.sentence_transformers import MixCSELoss
    from mixcse_hf.models.encoder import resolve_model_path
    from mixcse_hf.training.data import load_corpus

    transformer = Transformer(resolve_model_path(options.model), max_seq_length=options.max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="cls")
    model = SentenceTransformer(modules=[transformer, pooling], device="cuda" if torch.cuda.is_available() else "cpu")
    samples = (options.warmup + options.steps) * options.batch_size
    sentences = load_corpus(train_file=options.train_file, max_train_samples=samples)["text"]
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = Arguments(
            output_dir=output_dir,
            per_device_train_batch_size=options.batch_size,
            learning_rate=3e-5,
            max_steps=options.warmup + options.steps,
            save_strategy="no",
            report_to="none",
            logging_steps=1000,
            disable_tqdm=True,
            seed=42,
            bf16=bf16,
            use_cpu=bf16 and not torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=arguments,
            train_dataset=Dataset.from_dict(
                {"text": sentences} if mixcse else {"anchor": sentences, "positive": sentences}
            ),
            loss=MixCSELoss(model, mix_lambda=0.2) if mixcse else losses.MultipleNegativesRankingLoss(model),
            callbacks=[timer],
        )
        trainer.train()
    return measurement(timer.step_seconds(), options.warmup, model)


def floor_child(options: argparse.Namespace, bf16: bool = False) -> dict:
    """The bare encoder: forward of the same 2N padded rows, a trivial loss on [CLS], backward, AdamW step; on the
    GPU when there is one, under bf16 autocast if ``bf16``."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    from mixcse_hf.models.encoder import load_pretrained
    from mixcse_hf.training.data import load_corpus, tokenize_corpus

    torch.manual_seed(42)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_pretrained(options.model)
    model.to(device).train()
    samples = (options.warmup + options.steps) * options.batch_size
    corpus = load_corpus(train_file=options.train_file, max_train_samples=samples)
    loader = DataLoader(
        tokenize_corpus(corpus, tokenizer, options.max_seq_length),
        batch_size=options.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    ends = [time.perf_counter()]
    for batch in loader:
        doubled = {name: torch.cat([tensor, tensor]).to(device) for name, tensor in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**doubled).last_hidden_state[:, 0].float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        ends.append(time.perf_counter())
    return measurement([b - a for a, b in itertools.pairwise(ends)], options.warmup, model)


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    data_dir = os.environ.get("MIXCSE_DATA_DIR", "../shared/data")
    parser.add_argument("--train_file", default=os.path.join(data_dir, "wiki", "wiki1m_head.txt"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=32)
    options, extra = parser.parse_known_args(argv)
    if options.variant in ("st", "st_bf16", "st_mixcse", "st_mixcse_bf16"):
        variant = options.variant
        result = sentence_transformers_child(options, bf16="bf16" in variant, mixcse="mixcse" in variant)
    elif options.variant in ("floor", "floor_bf16"):
        result = floor_child(options, bf16=options.variant == "floor_bf16")
    else:
        result = trainer_child(options.variant, options, extra)
    result.update(
        variant=options.variant,
        peak_rss_mb=peak_rss_mb(),
        peak_gpu_mb=peak_gpu_mb(),
        torch_threads=torch.get_num_threads(),
    )
    print("RESULT " + json.dumps(result), flush=True)


def run_child(variant: str, options: list[str], environment: dict[str, str] | None = None) -> dict:
    """Run one measurement in a fresh process (``environment`` added to this one's); returns its RESULT record."""
    return child_result(__file__, [variant, *options], variant, environment)


def child_result(script: str, arguments: list[str], label: str, environment: dict[str, str] | None = None) -> dict:
    """``python SCRIPT child ARGUMENTS...`` in a fresh process (``environment`` added to this one's): the record of
    its last ``RESULT {json}`` line; a failed child is a RuntimeError naming ``label`` with its stderr's tail."""
    process = subprocess.run(
        [sys.executable, script, "child", *arguments],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(environment or {})},
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {label} failed:\n{process.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run_variants(variants: list[str], rounds: int, options: list[str]) -> dict[str, dict]:
    """Alternate the variants ``rounds`` times; summarise each by the median step time over all its steps."""
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    for round_index in range(rounds):
        for variant in variants:
            result = run_child(variant, options)
            runs[variant].append(result)
            median, rss = statistics.median(result["step_seconds"]), result["peak_rss_mb"]
            print(f"round {round_index + 1}/{rounds} {variant}: {median:.3f} s/step, {rss:.0f} MB", flush=True)
    summary = {}
    for variant, results in runs.items():
        steps = [s for r in results for s in r["step_seconds"]]
        gpu_peaks = [r["peak_gpu_mb"] for r in results if r.get("peak_gpu_mb") is not None]
        summary[variant] = {
            "median_step_seconds": statistics.median(steps),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "peak_gpu_mb": max(gpu_peaks) if gpu_peaks else None,
            "trainable_params": results[0]["trainable_params"],
            "total_params": results[0]["total_params"],
            "measured_steps": len(steps),
            "runs": results,
        }
    return summary


CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
"""The instruction-set flags that decide training speed on a CPU, bf16's above all."""


def cpu_description() -> dict:
    """The CPU's model name and its flags of :data:`CPU_FLAGS_OF_INTEREST`, from ``/proc/cpuinfo``."""
    model, flags = "unknown", set()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    return {"model": model, "flags": [flag for flag in CPU_FLAGS_OF_INTEREST if flag in flags]}


def machine() -> dict:
    """What a benchmark result records of the machine it was measured on."""
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
    else:
        sys.exit("usage: python benchmarks/harness.py child VARIANT [options]  (drivers: benchmarks/*.py)")
