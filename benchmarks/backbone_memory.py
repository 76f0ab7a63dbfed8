"""Per-device training memory of real 0.6B-8B decoders (and ModernBERT-base), computed from their published
configs, and the same computation checked against a measured CPU run of a ~0.1B random Qwen3.

``compute`` (default): weights, gradients and AdamW states for full fine-tuning and for LoRA (r 8 on q_proj and
v_proj, peft's default targets for qwen3; frozen base), plus the activations of the unsupervised objective
(2 dropout views x per-device batch x max_seq_length tokens) plain, with GradCache (one mini-batch's activations
plus the cached embeddings) and with gradient checkpointing, in bf16 mixed precision. Nothing is downloaded: the
few config numbers are written below with the Hub id each comes from. An estimate, not a measurement.

``measure``: a randomly initialised Qwen3 of ~0.1B parameters (:data:`MEASURED_SHAPE`, built from a config) trained
a few float32 steps on the wiki head (full, LoRA, LoRA + GradCache, LoRA + gradient checkpointing), each in its
own process; what training adds to the process's memory (peak RSS minus the RSS when training starts, so the
Python/torch baseline and the weights drop out) next to what the same formula computes for it.

    python benchmarks/backbone_memory.py compute [--batch_sizes 64 512 --lengths 32 128]
    MIXCSE_DATA_DIR=../shared/data python benchmarks/backbone_memory.py measure [--batch_size 16 --max_seq_length 32]

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
arXiv:2205.05198, section 4.1), which counts s*b*h*(34 + 5*a*s/h) bytes per layer of a GPT layer in 16-bit. The
same count, term by term, for a Qwen3 layer (see :func:`layer_activation_bytes_per_token`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "backbone_memory.json")
GIB = 2**30


@dataclass(frozen=True)
class Shape:
    """The config numbers the memory depends on. ``glu``: the MLP has a gate (SwiGLU / GeGLU), so
    ``intermediate`` is the width of each of its two input projections; ``qk_norm``: an RMSNorm on each query
    and key head (Qwen3). Training loads any checkpoint in float32, so its shipped dtype does not enter."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    qk_norm: bool = True
    glu: bool = True


MODELS = {
    "Qwen/Qwen3-0.6B": Shape(1024, 28, 3072, 16, 8, 128, 151936),
    "Qwen/Qwen3-4B": Shape(2560, 36, 9728, 32, 8, 128, 151936),
    "Qwen/Qwen3-8B": Shape(4096, 36, 12288, 32, 8, 128, 151936),
    "answerdotai/ModernBERT-base": Shape(768, 22, 1152, 12, 12, 64, 50368, qk_norm=False),
}
"""config.json of each Hub model: hidden_size, num_hidden_layers, intermediate_size, num_attention_heads,
num_key_value_heads (ModernBERT: no grouping), head_dim (ModernBERT: hidden / heads), vocab_size. ModernBERT's
MLP is GeGLU (``Wi`` projects to 2 x 1152)."""

MEASURED_SHAPE = Shape(768, 12, 2048, 12, 4, 64, 30522)
"""The ~0.1B random Qwen3 of ``measure`` (all-MiniLM-L6-v2's vocabulary), saved and trained in float32."""

LORA_RANK = 8
GRADCACHE_MINI_BATCH = 32
BF16, FP32 = 2, 4


def parameters(shape: Shape) -> int:
    """Parameters of the bare model (``AutoModel``: embeddings and layers, no LM head), biases left out (Qwen3
    has none, ModernBERT-base none)."""
    h, d = shape.hidden, shape.head_dim
    attention = h * shape.heads * d * 2 + h * shape.kv_heads * d * 2
    mlp = h * shape.intermediate * (3 if shape.glu else 2)
    norms = 2 * h + (2 * d if shape.qk_norm else 0)
    return shape.vocab * h + shape.layers * (attention + mlp + norms) + h


def lora_parameters(shape: Shape, rank: int = LORA_RANK) -> int:
    """LoRA's A (rank x in) and B (out x rank) on q_proj (h -> heads*d) and v_proj (h -> kv_heads*d) of every
    layer."""
    h, d = shape.hidden, shape.head_dim
    return shape.layers * rank * ((h + shape.heads * d) + (h + shape.kv_heads * d))


def layer_activation_bytes_per_token(shape: Shape, width: int) -> int:
    """Bytes one layer keeps for backward per token, ``width`` bytes per activation (2 under bf16 autocast, 4 in
    float32), attention through SDPA's memory-efficient or flash kernels (no s x s scores kept).

    Korthikanti et al.'s 34*s*b*h (16-bit) is: attention 11 (QKV input 2, Q 2, K 2, V 2, output-projection input
    2, dropout mask 1), MLP 19 (input 2, GeLU input 8, down-projection input 8, dropout mask 1), two LayerNorms 4;
    plus 5*a*s*s*b for the scores (softmax output 2, dropout mask 1, dropout output 2). A Qwen3 layer, counted the
    same way: QKV input and MLP input ``width*h`` each; Q and the output-projection input ``width*heads*d`` each,
    K and V ``width*kv_heads*d`` each (grouped-query attention); the SwiGLU MLP keeps gate output, SiLU output, up
    output and their product, ``4*width*i``; no hidden dropout. Each RMSNorm (two per layer, and the q/k norms
    per head) computes in float32: its float32 input (4 bytes) and its normalised output (``width``). The s x s
    term drops out with SDPA's fused kernels (the default attention of transformers 5); eager attention would
    add about 7*a*s bytes per token (float32 softmax, its cast, the dropout mask and output)."""
    h, d, i, w = shape.hidden, shape.head_dim, shape.intermediate, width
    norms = 2 * (FP32 + w) * h + ((FP32 + w) * (shape.heads + shape.kv_heads) * d if shape.qk_norm else 0)
    attention = 2 * w * h + w * (2 * shape.heads * d + 2 * shape.kv_heads * d)
    mlp = 4 * w * i if shape.glu else 2 * w * i
    return norms + attention + mlp


def activation_bytes(shape: Shape, rows: int, length: int, width: int, checkpointing: bool = False) -> int:
    """Activations kept for backward over ``rows`` rows of ``length`` tokens: every layer's, plus the final norm;
    with gradient checkpointing, each layer's input (``width*h`` per token) and one layer's activations,
    recomputed during its backward. Embeddings, the pooled vectors and the loss are left out (less than one
    layer's worth)."""
    tokens = rows * length
    per_layer = layer_activation_bytes_per_token(shape, width) * tokens
    final_norm = (FP32 + width) * shape.hidden * tokens
    if checkpointing:
        return shape.layers * width * shape.hidden * tokens + per_layer + final_norm
    return shape.layers * per_layer + final_norm


def state_bytes(trainable: int, parameter_bytes: int) -> int:
    """Gradient and AdamW's two moments of ``trainable`` parameters, all in their dtype (torch's AdamW keeps its
    states in the parameter's dtype)."""
    return 3 * parameter_bytes * trainable


def setups(shape: Shape, batch: int, length: int, width: int = BF16) -> dict[str, dict[str, int]]:
    """Memory components (bytes) of each training setup for per-device ``batch`` sentences of ``length`` tokens,
    2 dropout views each.

    - ``full``: training loads the weights in float32 whatever the checkpoint's dtype (fp32 weights, gradients,
      AdamW states), bf16 autocast, which caches a bf16 copy of every trained weight during the forward;
    - ``lora``: frozen float32 base (autocast casts its weights per use: frozen weights are not cached), adapters
      in float32 with their gradients and AdamW states;
    - ``lora_gradcache``: LoRA, activations of one mini-batch of :data:`GRADCACHE_MINI_BATCH` sentences (2 views
      each), plus the cached embeddings of the whole batch and their gradients (float32);
    - ``lora_checkpointing``: LoRA with gradient checkpointing.
    """
    total, adapters = parameters(shape), lora_parameters(shape)
    rows = 2 * batch
    activations = activation_bytes(shape, rows, length, width)
    lora_states = {"weights": FP32 * (total + adapters), "states": state_bytes(adapters, FP32)}
    cache = 2 * FP32 * rows * shape.hidden
    mini_rows = 2 * min(GRADCACHE_MINI_BATCH, batch)
    return {
        "full": {
            "weights": FP32 * total + (BF16 * total if width == BF16 else 0),
            "states": state_bytes(total, FP32),
            "activations": activations,
        },
        "lora": {**lora_states, "activations": activations},
        "lora_gradcache": {**lora_states, "activations": activation_bytes(shape, mini_rows, length, width) + cache},
        "lora_checkpointing": {
            **lora_states,
            "activations": activation_bytes(shape, rows, length, width, checkpointing=True),
        },
    }


SETUP_COLUMNS = (
    ("full", "full"),
    ("lora", "LoRA"),
    ("lora_gradcache", f"LoRA + GradCache {GRADCACHE_MINI_BATCH}"),
    ("lora_checkpointing", "LoRA + checkpointing"),
)


def compute(args: argparse.Namespace) -> dict:
    results = {}
    header = "".join(f"{label:>22}" for _, label in SETUP_COLUMNS)
    for model, shape in MODELS.items():
        total, adapters = parameters(shape), lora_parameters(shape)
        print(f"\n{model}: {total / 1e9:.3f}B parameters, LoRA r={LORA_RANK}: {adapters / 1e6:.2f}M (GiB per device)")
        print(f"{'batch':>6} {'length':>6}{header}{'activations':>13}")
        rows = []
        for batch in args.batch_sizes:
            for length in args.lengths:
                components = setups(shape, batch, length)
                totals = {name: sum(parts.values()) / GIB for name, parts in components.items()}
                cells = "".join(f"{totals[name]:>22.2f}" for name, _ in SETUP_COLUMNS)
                print(f"{batch:>6} {length:>6}{cells}{components['lora']['activations'] / GIB:>13.2f}")
                rows.append({"batch": batch, "length": length, "components": components, "total_gib": totals})
        results[model] = {"shape": asdict(shape), "parameters": total, "lora_parameters": adapters, "rows": rows}
    return results


MEASURED_SETUPS = {
    "full": ["--use_lora", "false"],
    "lora": ["--use_lora", "true"],
    "lora_gradcache": ["--use_lora", "true", "--gradcache_mini_batch_size"],
    "lora_checkpointing": ["--use_lora", "true", "--gradient_checkpointing", "true"],
}


def current_rss_bytes() -> int:
    with open("/proc/self/statm", encoding="utf-8") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_child(setup: str, options: argparse.Namespace) -> dict:
    """Train ``setup`` a few steps; the RSS when training starts (model, data and trainer built) and the peak."""
    from harness import StepTimer, timed_training

    class StartRss(StepTimer):
        start_rss = 0

        def on_train_begin(self, args, state, control, **kwargs):
            StartRss.start_rss = current_rss_bytes()
            return super().on_train_begin(args, state, control, **kwargs)

    extra = MEASURED_SETUPS[setup] + ([str(options.mini_batch_size)] if setup == "lora_gradcache" else [])
    with tempfile.TemporaryDirectory() as output_dir:
        flags = [
            "--model_name_or_path", options.model, "--train_file", options.train_file, "--output_dir", output_dir,
            "--per_device_train_batch_size", str(options.batch_size), "--max_seq_length", str(options.max_seq_length),
            "--max_steps", str(options.steps), "--pooler_type", "last", "--padding_free", "false",
            "--precision", "fp32", "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none",
            "--logging_steps", "1000", "--disable_tqdm", "true", "--seed", "42", *extra,
        ]  # fmt: skip
        timed_training(flags, StartRss())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"setup": setup, "start_rss": StartRss.start_rss, "peak_rss": peak}


def computed_increase(setup: str, options: argparse.Namespace) -> dict[str, int]:
    """What the formula says training adds to the weights already loaded, in float32: gradients and AdamW states
    of the trainable parameters (LoRA's adapters are created before training starts, so counted as loaded) and
    the activations."""
    shape, batch, length = MEASURED_SHAPE, options.batch_size, options.max_seq_length
    rows = 2 * batch
    trainable = parameters(shape) if setup == "full" else lora_parameters(shape)
    if setup == "lora_gradcache":
        mini_rows = 2 * options.mini_batch_size
        activations = activation_bytes(shape, mini_rows, length, FP32) + 2 * FP32 * rows * shape.hidden
    else:
        activations = activation_bytes(shape, rows, length, FP32, checkpointing=setup == "lora_checkpointing")
    return {"states": state_bytes(trainable, FP32), "activations": activations}


def measure(args: argparse.Namespace) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from harness import child_result, write_random_decoder

    from tests.conftest import decoder_tokenizer

    shape = MEASURED_SHAPE
    config = {
        "hidden_size": shape.hidden, "num_hidden_layers": shape.layers, "intermediate_size": shape.intermediate,
        "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "head_dim": shape.head_dim,
        "attention_dropout": 0.1,
    }  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as model_dir:
        write_random_decoder(model_dir, decoder_tokenizer(), **config)
        for setup in MEASURED_SETUPS:
            options = [setup, "--model", model_dir, "--batch_size", str(args.batch_size)]
            options += ["--max_seq_length", str(args.max_seq_length), "--steps", str(args.steps)]
            options += ["--mini_batch_size", str(args.mini_batch_size)]
            try:
                measured = child_result(os.path.abspath(__file__), options, setup)
            except RuntimeError as err:
                sys.exit(f"error: {err}")
            computed = computed_increase(setup, args)
            results.append({**measured, "computed": computed})
            increase = (measured["peak_rss"] - measured["start_rss"]) / 2**20
            print(
                f"{setup:<20} measured +{increase:>7.0f} MiB  computed +{sum(computed.values()) / 2**20:>7.0f} MiB "
                f"(states {computed['states'] / 2**20:.0f}, activations {computed['activations'] / 2**20:.0f}); "
                f"RSS at start {measured['start_rss'] / 2**20:.0f} MiB",
                flush=True,
            )
    return {"shape": asdict(shape), "parameters": parameters(shape), "setups": results}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("setup", choices=list(MEASURED_SETUPS))
    parser.add_argument("--model", required=True)
    data_dir = os.environ.get("MIXCSE_DATA_DIR", "../shared/data")
    parser.add_argument("--train_file", default=os.path.join(data_dir, "wiki", "wiki1m_head.txt"))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_seq_length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--mini_batch_size", type=int, default=4)
    options = parser.parse_args(argv)
    print("RESULT " + json.dumps(measure_child(options.setup, options)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["compute", "measure"], default="compute")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_seq_length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--mini_batch_size", type=int, default=4)
    args = parser.parse_args()
    results = {"compute": compute, "measure": measure}[args.part](args)
    stored = {}
    if os.path.isfile(RESULTS):
        with open(RESULTS, encoding="utf-8") as handle:
            stored = json.load(handle)
    if args.part == "measure":
        from harness import machine

        results = {"machine": machine(), **results}
    stored[args.part] = {"options": vars(args), "results": results}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump(stored, handle, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
    else:
        main()
