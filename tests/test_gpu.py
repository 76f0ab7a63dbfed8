"""CUDA checks, skipped without a GPU (``pytest -m gpu`` on a machine with one; scripts/gpu_check.sh runs them):
the loss and its gradients under bf16 and fp16 autocast against float32 on the same inputs, GradCache against one
plain pass on CUDA, a few trainer steps in bf16 and in fp16 (GradScaler), and the attention implementation used.

The precision check trains all-MiniLM-L6-v2 (``tests.conftest.minilm_path``: without the package, the GPU bundle's
copy), dropout off, on two views of 12 sentences. Tolerances, relative to the float32 result (‖x - x₃₂‖ / ‖x₃₂‖, all
parameters' gradients as one vector): bf16 loss 2e-2, gradients 1e-1; fp16 loss 1e-2, gradients 2e-2. bf16 keeps 8
significant bits (rounding 2⁻⁹ ≈ 2e-3 per operand), fp16 11 (2⁻¹² ≈ 2.4e-4); the logits are cosines divided by τ =
0.05, which multiplies the embeddings' rounding by 20, and the gradients add each layer's rounding. The same check
through CPU autocast gave 5.7e-3 / 2.7e-2 in bf16 and 3.4e-3 / 4.4e-3 in fp16: the tolerances leave about 4x for the
GPU's kernels. (A random encoder is no test here: its embeddings of all sentences nearly coincide, and the loss's
gradient, a difference of nearly equal terms, is then ill-conditioned: 0.45 relative error in bf16.) GradCache in
float32: 1e-6.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, DataCollatorWithPadding

from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.batch import BatchEmbedder, embed_batch, slice_rows
from tests.conftest import SENTENCES, minilm_path, parameter_grads

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on one with -m gpu)"),
]
LOSS = MixCSELoss(temp=0.05, mix_lambda=0.2)
TOLERANCES = {torch.bfloat16: (2e-2, 1e-1), torch.float16: (1e-2, 2e-2)}
"""dtype -> (loss, gradients) relative to float32; the module docstring says why."""
SHAPE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
"""The random BERT of the GradCache and attention checks."""


def random_bert(tokenizer_dir: str, device: str, dropout: float, seed: int = 0) -> BertModel:
    """A seeded random BERT of :data:`SHAPE` with the tokenizer's vocabulary, float32, in training mode."""
    torch.manual_seed(seed)
    vocabulary = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    config = BertConfig(
        vocab_size=vocabulary, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **SHAPE
    )
    return BertModel(config).to(device).train()


def two_views(tokenizer_dir: str, device: str) -> dict[str, dict[str, torch.Tensor]]:
    """Anchor and positive columns: each sentence and the same sentence without its last word, padded alike."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    positives = [" ".join([*sentence.split()[:-2], "."]) for sentence in SENTENCES]
    features = tokenizer(SENTENCES + positives, padding=True, return_tensors="pt").to(device)
    n = len(SENTENCES)
    return {
        "anchor": {name: tensor[:n] for name, tensor in features.items()},
        "positive": {name: tensor[n:] for name, tensor in features.items()},
    }


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([grads[name].flatten().double() for name in sorted(grads)])


def loss_and_grads(model: BertModel, batch: dict, dtype: torch.dtype | None, scale: float) -> tuple[float, dict]:
    """The MixCSE loss of ``batch`` (float32 weights, autocast to ``dtype`` unless None) and the parameters'
    gradients, the backward scaled by ``scale`` and undone after it, as a GradScaler does."""
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = LOSS(*embed_batch(model, batch, "cls"))
    (loss * scale).backward()
    return loss.item(), {name: grad / scale for name, grad in parameter_grads(model).items()}


def precision_errors(model_dir: str, device: str, dtype: torch.dtype) -> tuple[float, float]:
    """(loss, gradients) relative error of autocast ``dtype`` against float32 for the encoder at ``model_dir``
    (loaded in float32), dropout off so that both compute the same function."""
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, **no_dropout).to(device).train()
    batch = two_views(model_dir, device)
    scale = 2.0**12 if dtype == torch.float16 else 1.0  # fp16 gradients underflow unscaled: the Trainer scales too
    reference_loss, reference = loss_and_grads(model, batch, None, 1.0)
    loss, grads = loss_and_grads(model, batch, dtype, scale)
    assert set(grads) == set(reference)
    gradient_error = (flat(grads) - flat(reference)).norm() / flat(reference).norm()
    return abs(loss - reference_loss) / abs(reference_loss), gradient_error.item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_loss_and_gradients_in_half_precision_match_float32(dtype: torch.dtype) -> None:
    loss_error, gradient_error = precision_errors(minilm_path(), "cuda", dtype)
    print(f"{dtype}: loss relative error {loss_error:.2e}, gradients {gradient_error:.2e}")
    loss_tolerance, gradient_tolerance = TOLERANCES[dtype]
    assert loss_error <= loss_tolerance
    assert gradient_error <= gradient_tolerance


def test_gradcache_matches_one_plain_pass_on_cuda(tiny_model_dir: str) -> None:
    """Dropout on, float32: CachedLoss (mini-batches of 5) gives the loss and gradients of one full-graph pass over
    the same mini-batches with the same CUDA dropout masks, to 1e-6, and leaves the CUDA RNG where that pass does."""
    model = random_bert(tiny_model_dir, "cuda", dropout=0.1)
    batch = {"text": two_views(tiny_model_dir, "cuda")["anchor"]}
    torch.cuda.manual_seed(123)
    views = [embed_batch(model, slice_rows(batch, start, start + 5), "cls") for start in (0, 5, 10)]
    loss = LOSS(torch.cat([view[0] for view in views]), torch.cat([view[1] for view in views]))
    loss.backward()
    expected, rng_after_reference = parameter_grads(model), torch.cuda.get_rng_state()

    torch.cuda.manual_seed(123)
    cached = CachedLoss(LOSS, 5)(BatchEmbedder(model, "cls"), batch)
    cached.backward()
    actual = parameter_grads(model)
    assert abs(cached.item() - loss.item()) <= 1e-6 * abs(loss.item())
    assert set(actual) == set(expected)
    assert ((flat(actual) - flat(expected)).norm() / flat(expected).norm()).item() <= 1e-6
    assert torch.equal(torch.cuda.get_rng_state(), rng_after_reference)


def train_steps(model_dir: str, corpus: str, output_dir: str, precision: str) -> tuple[list[float], object]:
    """16 MixCSETrainer steps (batch 8, constant lr 5e-4, seed 0) of the model at ``model_dir`` in ``precision``
    ("bf16"/"fp16"); returns the logged loss of each step and the trainer."""
    from mixcse_hf.training.build import build_model, build_training_data
    from mixcse_hf.training.config import parse_run_args
    from mixcse_hf.training.trainer import MixCSETrainer

    flags = [
        "--model_name_or_path", model_dir, "--train_file", corpus, "--output_dir", output_dir,
        "--per_device_train_batch_size", "8", "--max_steps", "16", "--learning_rate", "5e-4", "--seed", "0",
        "--lr_scheduler_type", "constant",
        "--logging_steps", "1", "--save_strategy", "no", "--do_eval", "false", "--report_to", "none",
        "--disable_tqdm", "true", f"--{precision}", "true",
    ]  # fmt: skip
    model_args, data_args, training_args = parse_run_args(flags)
    model, tokenizer = build_model(model_args, training_args, resuming=False)
    trainer = MixCSETrainer(
        model=model,
        args=training_args,
        train_dataset=build_training_data(data_args, training_args, tokenizer).dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry], trainer


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trainer_steps_in_half_precision_train(tiny_model_dir: str, tmp_path, precision: str) -> None:
    """bf16 and fp16 (with a GradScaler) training on CUDA: float32 master weights, every loss finite, and the
    last four steps' mean loss under the first four's."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 8) + "\n", encoding="utf-8")
    losses, trainer = train_steps(tiny_model_dir, str(corpus), str(tmp_path / "out"), precision)
    print(f"{precision} losses: {', '.join(f'{value:.3f}' for value in losses)}")
    assert len(losses) == 16 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) < sum(losses[:4])
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert next(trainer.model.parameters()).dtype == torch.float32
    assert (trainer.accelerator.scaler is not None) == (precision == "fp16")


def test_attention_implementation_is_sdpa(tiny_model_dir: str) -> None:
    """The attention kernel a BERT gets on this GPU (printed): SDPA, the fused one, not eager."""
    model = random_bert(tiny_model_dir, "cuda", dropout=0.0)
    implementation = model.config._attn_implementation
    print(f"attention implementation: {implementation}")
    assert implementation == "sdpa"
