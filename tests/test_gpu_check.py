"""The GPU check's CPU side: the offline bundle (its wheel list, bf16 model round trip, data, manifest, size), the
FLOPs formula against torch's FLOP counter, the targets, the quick-start comparison and the report, one harness
child through the throughput part, and (slow) the whole ``scripts/gpu_check.sh --smoke``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel
from transformers.modeling_utils import PreTrainedModel

from tests.conftest import REPO_ROOT, TINY_SHAPE


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bundle = _script("gpu_bundle")
check = _script("gpu_check")


def _weights(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_bundle_model_is_bf16_on_disk_and_trains_from_float32(tiny_model_dir: str, tmp_path: Path) -> None:
    """The bundle stores the encoder in bf16 (half the bytes); the GPU side loads it back as float32 with the
    bf16-rounded values and the same tokenizer."""
    bundle.save_bf16_model(tiny_model_dir, tmp_path / "bf16")
    stored = AutoModel.from_pretrained(tmp_path / "bf16")
    assert stored.dtype == torch.bfloat16
    size = (tmp_path / "bf16" / "model.safetensors").stat().st_size
    assert size < 0.55 * (Path(tiny_model_dir) / "model.safetensors").stat().st_size
    copy = bundle.float32_copy(tmp_path / "bf16", tmp_path / "fp32")
    loaded, original = AutoModel.from_pretrained(copy), AutoModel.from_pretrained(tiny_model_dir)
    assert loaded.dtype == torch.float32
    expected = {name: tensor.to(torch.bfloat16).float() for name, tensor in _weights(original).items()}
    assert all(torch.equal(tensor, expected[name]) for name, tensor in _weights(loaded).items())
    assert (copy / "tokenizer.json").read_text() == (Path(tiny_model_dir) / "tokenizer.json").read_text()


def test_bundle_data_and_manifest(data_dir: Path, tmp_path: Path) -> None:
    """The quick start's files are copied in their layout; the manifest finds a changed and a missing file."""
    bundle.copy_data(data_dir, tmp_path / "data")
    for name in bundle.DATA_FILES:
        assert (tmp_path / "data" / name).read_bytes() == (data_dir / name).read_bytes()
    manifest = bundle.write_manifest(tmp_path)
    assert set(manifest["files"]) == {f"data/{name}" for name in bundle.DATA_FILES}
    assert bundle.check_manifest(tmp_path) == []
    (tmp_path / "data" / bundle.DATA_FILES[1]).write_text("changed", encoding="utf-8")
    (tmp_path / "data" / bundle.DATA_FILES[0]).unlink()
    assert sorted(bundle.check_manifest(tmp_path)) == sorted(
        [f"data/{bundle.DATA_FILES[0]} missing", f"data/{bundle.DATA_FILES[1]} differs"]
    )


def test_bundle_data_names_missing_files(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"lacks wiki/wiki1m_head\.txt.*set MIXCSE_DATA_DIR"):
        bundle.copy_data(tmp_path, tmp_path / "data")


def test_wheels_are_every_dependency_but_torch_at_the_tested_versions() -> None:
    """The package's dependencies, sentence-transformers' and pytest's, followed through their metadata, each at
    the installed version; torch (the GPU machine's own CUDA build), what only torch needs, and the project are
    left out."""
    requirements = bundle.wheel_requirements()
    names = [requirement.split("==")[0] for requirement in requirements]
    assert names == sorted(set(names))
    for name in (
        "transformers",
        "accelerate",
        "datasets",
        "evaluate",
        "peft",
        "sentence-transformers",
        "pytest",
        "setuptools",
    ):
        assert f"{name}=={version(name)}" in requirements
    assert "tokenizers" in names and "pyarrow" in names  # dependencies of dependencies
    assert not {"torch", "mixcse-hf", "triton"} & set(names)
    assert not [name for name in names if name.startswith("nvidia-")]


def test_bundle_sizes_count_each_part(tmp_path: Path) -> None:
    for part, size in (("wheels", 100), ("model", 30), ("data", 7)):
        (tmp_path / part).mkdir()
        (tmp_path / part / "file").write_bytes(b"x" * size)
    (tmp_path / "manifest.json").write_bytes(b"{}")
    assert bundle.bundle_sizes(tmp_path) == {"wheels": 100, "model": 30, "data": 7, "total": 139}
    assert bundle.bundle_sizes(tmp_path / "absent")["total"] == 0


def test_without_a_bundle_the_check_needs_the_data(tmp_path: Path, monkeypatch) -> None:
    """No bundle: the installed package's model and MIXCSE_DATA_DIR; a data directory without the wiki head is a
    one-line exit naming both ways out."""
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match=r"set MIXCSE_DATA_DIR, or run bash scripts/prepare_gpu_bundle\.sh"):
        check.sources(tmp_path / "no-bundle", smoke=False)


def test_training_flops_formula_matches_torch_flop_counter() -> None:
    """A training step (forward + backward) of a small BERT at length 32, counted by torch's FLOP counter, is
    encoder_training_flops within 1% (the counter also sees the pooler, which the formula leaves out)."""
    from torch.utils.flop_counter import FlopCounterMode

    config = BertConfig(vocab_size=1000, **{**TINY_SHAPE, "hidden_size": 64, "intermediate_size": 256})
    model, ids = BertModel(config).train(), torch.randint(0, 1000, (6, 32))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, 0].pow(2).mean().backward()
    predicted = check.encoder_training_flops(config, rows=6, length=32)
    assert counter.get_total_flops() == pytest.approx(predicted, rel=1e-2)


def test_mean_padded_length_and_cycled_corpus(tmp_path: Path) -> None:
    assert check.mean_padded_length([5] * 10, batch=4) == 5
    assert 10 < check.mean_padded_length([10, 20] * 50, batch=2, batches=200) < 20
    source = tmp_path / "source.txt"
    source.write_text("a\n\nb\nc\n", encoding="utf-8")
    check.cycled_corpus(source, tmp_path / "cycled.txt", 7)
    assert (tmp_path / "cycled.txt").read_text(encoding="utf-8").split() == list("abcabca")


def _run(seconds: float, batch: int, gpu_mb: float | None = None, extra: list[str] | None = None) -> dict:
    return {"median_step_seconds": seconds, "batch": batch, "peak_gpu_mb": gpu_mb, "extra": extra or []}


def test_throughput_targets() -> None:
    """MixCSE over the floor per batch, over sentence-transformers at the smallest batch, and GradCache's time per
    sentence and memory against plain training at its mini-batch size."""
    runs = {
        "mixcse_bf16@64": _run(0.105, 64),
        "floor_bf16@64": _run(0.100, 64),
        "st_bf16@64": _run(0.126, 64),
        "mixcse_bf16@256": _run(0.300, 256, gpu_mb=1000.0),
        "floor_bf16@256": _run(0.250, 256),
        "gradcache@4096/256": _run(6.0, 4096, gpu_mb=1500.0, extra=["--gradcache_mini_batch_size", "256"]),
        "st_bf16@256": {"batch": 256, "error": "failed"},
    }
    targets = check.throughput_targets(runs)
    assert targets["mixcse_over_floor@64"] == {"value": 1.05, "target": "<= 1.10", "ok": True}
    assert targets["mixcse_over_floor@256"]["value"] == 1.2 and not targets["mixcse_over_floor@256"]["ok"]
    assert targets["mixcse_over_st@64"] == {"value": 1.2, "target": ">= 1.3", "ok": False}
    gradcache = targets["gradcache_overhead gradcache@4096/256"]
    assert gradcache["value"] == pytest.approx(0.25) and gradcache["ok"] and gradcache["memory_ratio"] == 1.5


def test_quickstart_comparison_uses_the_stated_tolerances() -> None:
    scores = {"start": {"dev": 79.80, "test": 73.70}, "trained": {"dev": 84.90, "test": 80.60}}
    comparison = check.compare_quickstart(scores)
    assert comparison["start"]["dev"] == {"gpu": 79.80, "cpu": 79.73, "difference": 0.07, "ok": True}
    assert not comparison["start"]["test"]["ok"]  # 0.2 over the 0.1 for an untrained model
    assert comparison["trained"]["dev"]["ok"] and comparison["trained"]["test"]["ok"]


def test_report_renders_each_part_and_its_failures(tmp_path: Path) -> None:
    check.record(tmp_path, "tests", status="ok", counts={"passed": 6}, printed=["attention implementation: sdpa"])
    check.record(tmp_path, "throughput", status="running", runs={"st_bf16@64": {"batch": 64, "error": "x\nboom"}})
    check.failed(tmp_path, "throughput", 124)
    check.failed(tmp_path, "compile", 1)
    check.report(tmp_path)
    text = (tmp_path / check.REPORT_NAME).read_text(encoding="utf-8")
    assert "## pytest -m gpu: ok {'passed': 6}\nattention implementation: sdpa" in text
    assert "## Throughput (bf16, length 32): timeout" in text and "| st_bf16@64 | failed: boom |" in text
    assert "## torch.compile: failed" in text
    assert json.loads((tmp_path / check.RESULTS_NAME).read_text())["parts"]["compile"] == {"status": "failed", "rc": 1}


def test_throughput_part_records_a_harness_child(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """One floor run at toy size in its own process: recorded with its speed and FLOP rate as it finishes."""
    monkeypatch.setenv("MIXCSE_DATA_DIR", str(data_dir))
    plan = [check.Run("floor_bf16@4", "floor_bf16", 4, 2, 1)]
    check.throughput(tmp_path, tmp_path / "no-bundle", smoke=True, plan=plan)
    part = json.loads((tmp_path / check.RESULTS_NAME).read_text())["parts"]["throughput"]
    run = part["runs"]["floor_bf16@4"]
    assert part["status"] == "ok" and run["measured_steps"] == 2 and run["sentences_per_second"] > 0
    assert run["tflops"] > 0 and run["peak_gpu_mb"] is None  # no GPU here


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_part(data_dir: Path, tmp_path: Path) -> None:
    """``bash scripts/gpu_check.sh --smoke``: every part ends ok at toy size on the CPU and the report is
    written; the CUDA tests skip (about 4 minutes on 2 cores)."""
    env = {**os.environ, "OUT": str(tmp_path), "MIXCSE_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--smoke"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = json.loads((tmp_path / check.RESULTS_NAME).read_text())["parts"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(check.PARTS, "ok")
    assert parts["tests"]["counts"] == {"skipped": 6}
    assert len(parts["throughput"]["runs"]) == len(check.throughput_plan(smoke=True))
    assert (tmp_path / check.REPORT_NAME).is_file()


def test_a_partial_bundle_still_builds_the_package() -> None:
    """GPU_BUNDLE_ONLY keeps the packages named and setuptools, which builds the checkout's package offline."""
    requirements = ["datasets==5.2.0", "setuptools==84.2.1", "transformers==5.24.0"]
    assert bundle.only_packages(requirements, ["datasets"]) == ["datasets==5.2.0", "setuptools==84.2.1"]
    assert bundle.only_packages(requirements, None) == requirements
