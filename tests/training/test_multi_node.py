"""Two "nodes" on localhost (torchrun --nnodes 2, one CPU process each, gloo, static rendezvous on 127.0.0.1) train
the model one process trains on the global batch, for map-style and streaming data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from transformers import AutoModel

from run_mixcse import main
from tests.conftest import REPO_ROOT, SENTENCES, free_port

GLOBAL_BATCH = 8
RELATIVE_TOLERANCE = 1e-4
"""Of the largest weight update. Measured: 1.5e-5 of it (float32 sums in another order); 1.6e-3 when process 1 read
its rows in another order (a shuffle seeded per process)."""


def _corpus(tmp_path: Path) -> Path:
    """40 (anchor, positive) pairs: supervised, as the model has no dropout (which unsupervised training needs)."""
    path = tmp_path / "pairs.tsv"
    rows = [f"{SENTENCES[index % 12]}\t{SENTENCES[(index * 5 + index // 12) % 12]}" for index in range(40)]
    path.write_text("anchor\tpositive\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _config(tmp_path: Path, model_dir: str, streaming: bool) -> Path:
    """Two plain SGD steps (no clipping, constant rate): the weights move by the gradients themselves."""
    values = {
        "model_name_or_path": model_dir,
        "train_file": str(_corpus(tmp_path)),
        "streaming": streaming,
        "shuffle_buffer_size": 8,
        "max_seq_length": 16,
        "max_steps": 2,
        "optim": "sgd",
        "learning_rate": 0.5,
        "lr_scheduler_type": "constant",
        "max_grad_norm": 0.0,
        "weight_decay": 0.0,
        "save_strategy": "no",
        "do_train": True,
        "do_eval": False,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 3,
        "precision": "fp32",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture
def dropout_free_model(tiny_model_dir: str, tmp_path: Path) -> str:
    """The tiny BERT without dropout: the two layouts then compute the same activations (dropout masks come from
    each process's own random stream)."""
    path = tmp_path / "no-dropout"
    model = AutoModel.from_pretrained(tiny_model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path / name).write_bytes((Path(tiny_model_dir) / name).read_bytes())
    return str(path)


def _two_nodes(config: Path, output_dir: Path) -> None:
    port = str(free_port())
    launches = []
    for node in range(2):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
            "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", port,
            str(REPO_ROOT / "run_mixcse.py"), str(config), "--output_dir", str(output_dir),
            "--per_device_train_batch_size", str(GLOBAL_BATCH // 2),
        ]  # fmt: skip
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "cwd": config.parent}
        launches.append(subprocess.Popen(command, **options))
    for node, launch in enumerate(launches):
        output, _ = launch.communicate(timeout=600)
        assert launch.returncode == 0, f"node {node}:\n{output[-3000:]}"


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_two_nodes_train_as_one_process_with_the_global_batch(
    dropout_free_model: str, tmp_path: Path, streaming: bool
) -> None:
    config = _config(tmp_path, dropout_free_model, streaming)
    one, two = tmp_path / "one-process", tmp_path / "two-nodes"
    assert main([str(config), "--output_dir", str(one), "--per_device_train_batch_size", str(GLOBAL_BATCH)]) == 0
    _two_nodes(config, two)

    start = AutoModel.from_pretrained(dropout_free_model).state_dict()
    expected, got = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    moved = max((expected[name] - start[name]).abs().max().item() for name in expected if name in start)
    assert moved > 1e-3, "training did not change the weights: the comparison would prove nothing"
    difference = max((expected[name] - got[name]).abs().max().item() for name in expected)
    print(f"largest weight update {moved:.3g}, two nodes vs one process: max abs difference {difference:.3g}")
    assert difference <= RELATIVE_TOLERANCE * moved
    assert "batch size (global)` | 8 |" in (two / "README.md").read_text()


def _fake_command(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(0o755)


def test_the_slurm_script_launches_one_accelerate_per_node(tmp_path: Path) -> None:
    """scripts/slurm/multi_node.sbatch under stand-ins for srun (2 nodes), scontrol and accelerate: each node gets
    its machine rank, the head node's address, every process counted, the config file and flags passed on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "launches.txt"
    _fake_command(bin_dir, "scontrol", 'printf "gpu-node-a\\ngpu-node-b\\n"\n')
    _fake_command(
        bin_dir,
        "srun",
        'while [[ $1 == --* ]]; do shift; done\nfor node in 0 1; do SLURM_NODEID=$node "$@" || exit; done\n',
    )
    _fake_command(bin_dir, "accelerate", f'echo "$*" >> {log}\n')
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu-node-[a-b]",
        "SLURM_NNODES": "2",
        "GPUS_PER_NODE": "4",
    }
    script = str(REPO_ROOT / "scripts" / "slurm" / "multi_node.sbatch")
    arguments = ["configs/unsup_mixcse_bert_base.yaml", "--per_device_train_batch_size", "16"]
    proc = subprocess.run(["bash", script, *arguments], env=environment, capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    launches = log.read_text().splitlines()
    assert len(launches) == 2
    for rank, launch in enumerate(launches):
        assert f"--machine_rank {rank} " in launch
        assert "--num_machines 2 --num_processes 8 " in launch
        assert "--main_process_ip gpu-node-a --main_process_port 29500 " in launch
        assert "--config_file configs/accelerate/multi_node_ddp_bf16.yaml " in launch
        assert launch.endswith("run_mixcse.py configs/unsup_mixcse_bert_base.yaml --per_device_train_batch_size 16")

    usage = subprocess.run(["bash", script], env=environment, capture_output=True, text=True, cwd=REPO_ROOT)
    assert usage.returncode == 2 and "usage: sbatch" in usage.stderr


def test_the_multi_node_accelerate_config_loads() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / "multi_node_ddp_bf16.yaml"))
    assert (config.distributed_type.value, config.mixed_precision, config.num_machines) == ("MULTI_GPU", "bf16", 2)
    assert config.rdzv_backend == "static"
