"""Before vs after a refactor: the tiny seeded run reproduces the loss curve, logged statistics and final weights
recorded in ``tests/data/reference_run.json`` (first made at commit 78c7153, before the architecture-by-role change;
recorded again, unchanged code, at cb7cfa8 before the run-lifecycle redesign, on the CPU model the file names).

Bit for bit on the CPU the reference was recorded on (same torch build, kernel capability and CPU model: the
BLAS picks other kernels on another vendor's CPU of the same capability); elsewhere floating-point kernels differ,
so the comparison falls back to a tight tolerance. ``MIXCSE_RECORD_REFERENCE=1 pytest tests/test_reference_run.py``
records the reference anew (do it before a change whose behaviour must not move, never to make a failure pass).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from run_mixcse import main
from tests.conftest import PADDED, TRAINER_DEFAULTS

REFERENCE_PATH = Path(__file__).parent / "data" / "reference_run.json"
REFERENCE = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
UNMASKED = ["--mask_duplicates", "false"]
RUN_FLAGS = {
    "unmasked": UNMASKED,
    "simcse_avg": ["--pooler_type", "avg", "--mix_lambda", "0", *UNMASKED],
    "default": [],
}
"""The runs recorded before duplicate masking (``unmasked``, ``simcse_avg``) train the reference loss; ``default``
(recorded at f92be2f, on the same CPU model) masks the duplicates of the tiny corpus, which holds each sentence
twice."""
RECORDING = os.environ.get("MIXCSE_RECORD_REFERENCE") == "1"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what the platform reports)."""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor()


def kernel_identity() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
    }


SAME_KERNELS = all(REFERENCE.get(key) == value for key, value in kernel_identity().items())


def _seeded_run(model_dir: str, corpus: Path, output_dir: Path, flags: list[str]) -> dict:
    args = [
        *TRAINER_DEFAULTS,  # recorded before a run without a config took the quick start's settings
        *PADDED,
        *("--model_name_or_path", model_dir, "--train_file", str(corpus), "--output_dir", str(output_dir)),
        *("--max_steps", "6", "--per_device_train_batch_size", "4", "--save_strategy", "no"),
        *("--logging_steps", "1", "--report_to", "none", "--do_train", "true", "--seed", "7", *flags),
    ]
    assert main(args) == 0
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    weights = load_file(str(output_dir / "model.safetensors"))
    return {
        "logs": [{k: v for k, v in entry.items() if k != "epoch"} for entry in history if "loss" in entry],
        "weights_sha256": {
            name: hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()
            for name, tensor in sorted(weights.items())
        },
        "weights_sum": {name: float(tensor.double().sum()) for name, tensor in sorted(weights.items())},
    }


@pytest.mark.parametrize("name", list(RUN_FLAGS))
def test_seeded_run_matches_the_recorded_reference(
    tiny_model_dir: str, tiny_corpus: Path, tmp_path: Path, name: str
) -> None:
    actual = _seeded_run(tiny_model_dir, tiny_corpus, tmp_path / name, RUN_FLAGS[name])
    if RECORDING:
        record_reference(name, actual)
        pytest.skip("recorded the reference anew")
    expected = REFERENCE["runs"][name]
    assert [sorted(entry) for entry in actual["logs"]] == [sorted(entry) for entry in expected["logs"]]
    if SAME_KERNELS:
        assert actual["logs"] == expected["logs"]
        assert actual["weights_sha256"] == expected["weights_sha256"]
        return
    for got, want in zip(actual["logs"], expected["logs"], strict=True):
        for key, value in want.items():
            assert math.isclose(got[key], value, rel_tol=1e-4, abs_tol=1e-4), (key, got[key], value)
    for tensor_name, value in expected["weights_sum"].items():
        assert math.isclose(actual["weights_sum"][tensor_name], value, rel_tol=1e-4, abs_tol=1e-3), tensor_name


def record_reference(name: str, run: dict) -> None:
    """Write ``run`` as the reference run ``name``, with the kernels it ran on."""
    reference = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
    reference.update(kernel_identity())
    reference["runs"][name] = {"losses": [entry["loss"] for entry in run["logs"]], **run}
    REFERENCE_PATH.write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
