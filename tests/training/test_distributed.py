"""Negatives across processes: 2 CPU processes (gloo) give the loss and gradients of 1 process holding the
whole batch; and a real 2-process launch of run_mixcse.py completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoConfig, AutoModel, AutoTokenizer

from mixcse_hf.losses.base import batch_loss
from mixcse_hf.losses.cached import CachedLoss
from mixcse_hf.losses.mixcse import MixCSELoss
from mixcse_hf.models.batch import TEXT_HASH, BatchEmbedder, slice_rows, text_hash
from mixcse_hf.models.distributed import gather_tensor, gather_with_grad
from mixcse_hf.models.encoder import prepare_tokenizer
from tests.conftest import REPO_ROOT, SENTENCES, free_port, padded_columns, without_dropout

TOLERANCE = 1e-10  # float64


def _deterministic_model(model_dir: str, pooler: str) -> torch.nn.Module:
    """The tiny model in float64 without dropout, so both process layouts see identical activations; an unused
    pooler is frozen, as run_mixcse.py does (DDP needs every trainable parameter to get a gradient)."""
    model = without_dropout(AutoModel.from_pretrained(model_dir))
    if pooler != "cls" and getattr(model, "pooler", None) is not None:
        model.pooler.requires_grad_(False)
    return model.double().train()


LOSSES = {
    "text": MixCSELoss(temp=0.05, mix_lambda=0.2),
    "triplets": MixCSELoss(temp=0.05, mix_lambda=0.2, mixed_hard_negative=True, hard_negative_weight=0.3),
    "duplicated text": MixCSELoss(temp=0.05, mix_lambda=0.2, mask_duplicates=True),
    "duplicated triplets": MixCSELoss(
        temp=0.05, mix_lambda=0.2, mixed_hard_negative=True, hard_negative_weight=0.3, mask_duplicates=True
    ),
}


def _batch(model_dir: str, layout: str) -> dict[str, dict[str, torch.Tensor]]:
    """8 rows: one text column (encoded twice), or (anchor, positive, negative) columns padded to one length as
    ``TextColumnsCollator`` pads them. The duplicated layouts repeat texts across the two processes' halves and
    carry the text hashes, as the collators add them for ``mask_duplicates``."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prepare_tokenizer(tokenizer, AutoConfig.from_pretrained(model_dir), model_dir)
    if layout.endswith("text"):
        columns = {"text": SENTENCES[:4] * 2 if layout.startswith("duplicated") else SENTENCES[:8]}
        batch = {"text": dict(tokenizer(columns["text"], padding=True, return_tensors="pt"))}
    else:
        positives = SENTENCES[2:6] * 2 if layout.startswith("duplicated") else SENTENCES[2:10]
        columns = {"anchor": SENTENCES[:8], "positive": positives, "negative": SENTENCES[4:12]}
        batch = padded_columns(tokenizer, columns)
    if layout.startswith("duplicated"):
        for column, texts in columns.items():
            batch[column][TEXT_HASH] = torch.tensor([text_hash(text) for text in texts])
    return batch


def _loss(
    model: torch.nn.Module, batch: dict, pooler: str, layout: str, cached: bool = False, packed: bool = False
) -> torch.Tensor:
    """Plain: one forward pass; cached: GradCache in mini-batches of 3 rows (backward replays them); packed:
    padding-free rows. Every view (the hard negatives too) is gathered from all processes."""
    no_sync = model.no_sync if isinstance(model, DistributedDataParallel) else BatchEmbedder.no_sync
    embedder = BatchEmbedder(
        model, pooler, gather_with_grad, no_sync, padding_free=packed, pack_length=24, gather_hashes=gather_tensor
    )
    return CachedLoss(LOSSES[layout], 3)(embedder, batch) if cached else batch_loss(LOSSES[layout], embedder, batch)


def _worker(
    rank: int, world: int, port: int, model_dir: str, pooler: str, layout: str, cached: bool, packed: bool, out: str
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = DistributedDataParallel(_deterministic_model(model_dir, pooler), broadcast_buffers=False)
    rows = 8 // world
    local_batch = slice_rows(_batch(model_dir, layout), rank * rows, (rank + 1) * rows)
    loss = _loss(model, local_batch, pooler, layout, cached, packed)
    loss.backward()
    grads = {name: p.grad for name, p in model.module.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize(
    ("pooler", "layout", "cached", "packed"),
    [
        ("cls", "text", False, False),
        ("avg", "text", False, False),
        ("cls", "text", True, False),
        ("avg", "text", True, False),
        ("cls", "triplets", False, False),
        ("avg", "triplets", True, False),
        ("cls", "text", True, True),
        ("avg_first_last", "triplets", False, True),
        ("cls", "duplicated text", False, False),
        ("avg", "duplicated triplets", True, False),
        ("cls", "duplicated text", True, True),
    ],
)
def test_two_processes_equal_one_process(
    tiny_model_dir: str, tmp_path: Path, pooler: str, layout: str, cached: bool, packed: bool
) -> None:
    """Plain or through CachedLoss (GradCache), padded or padding-free, unsupervised or on triplets (mixed hard
    negatives, hard-negative weight) on 2 processes, masking duplicates across them: the gradients of 1 process,
    plain, padded, whole batch."""
    assert_two_processes_equal_one(tiny_model_dir, tmp_path, pooler, layout, cached, packed)


def assert_two_processes_equal_one(
    model_dir: str, tmp_path: Path, pooler: str, layout: str, cached: bool, packed: bool, tolerance: float = TOLERANCE
) -> None:
    """The loss and gradients of each of 2 processes equal those of 1 process, plain, padded, whole batch."""
    model = _deterministic_model(model_dir, pooler)
    loss = _loss(model, _batch(model_dir, layout), pooler, layout)
    loss.backward()
    expected = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    spawn_args = (2, free_port(), model_dir, pooler, layout, cached, packed, str(tmp_path))
    mp.spawn(_worker, args=spawn_args, nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["loss"].item() == pytest.approx(loss.item(), abs=tolerance)
        assert set(result["grads"]) >= set(expected)
        for name, grad in expected.items():
            difference = (result["grads"][name] - grad).abs().max().item()
            assert difference <= tolerance, f"rank {rank} {name}: {difference}"


SHARDING = {
    "ddp": {},
    "fsdp": {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": ["BertLayer"],
        },
    },
}


@pytest.mark.parametrize("sharding", sorted(SHARDING))
def test_torchrun_two_cpu_processes(
    sharding: str, tiny_model_dir: str, tiny_corpus: Path, tiny_senteval: Path, tmp_path: Path
) -> None:
    """torchrun --nproc_per_node 2 run_mixcse.py --use_cpu true (gloo), with DDP or FSDP: trains, evaluates and
    saves once. (accelerate launch starts several CPU processes only through MPI, which the test machines lack.)"""
    config = tmp_path / "config.yaml"
    values = {
        "model_name_or_path": tiny_model_dir,
        "train_file": str(tiny_corpus),
        "senteval_dir": str(tiny_senteval),
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "eval_strategy": "steps",
        "eval_steps": 3,
        "save_steps": 3,
        "do_train": True,
        "report_to": "none",
        "disable_tqdm": True,
        "precision": "fp32",
        **SHARDING[sharding],
    }
    config.write_text(yaml.safe_dump(values), encoding="utf-8")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(REPO_ROOT / "run_mixcse.py"), str(config), "--use_cpu", "true",
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    state = yaml.safe_load((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert any("eval_stsb_spearman" in entry for entry in state["log_history"])
    assert (out / "model.safetensors").is_file()
    assert "batch size (global)` | 8 |" in (out / "README.md").read_text()
    assert proc.stdout.count("checkpoint: ") == 1  # the summary comes from the main process only
