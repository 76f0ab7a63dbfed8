"""``precision: auto``: the choice for each kind of hardware (capability probes patched), the Trainer's flags still
deciding when given, a resumed run keeping its precision, and the choice recorded and logged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from mixcse_hf.errors import UsageError
from mixcse_hf.training import precision
from mixcse_hf.training.precision import cpu_has_native_bf16, emulation_warning, resolve_precision
from mixcse_hf.training.run_dir import RUN_FILE
from mixcse_hf.training.training_args import MixCSETrainingArguments
from run_mixcse import main


def patch_hardware(monkeypatch: pytest.MonkeyPatch, cpu_bf16: bool = False, cuda_bf16: bool = False) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda: cuda_bf16)


@pytest.mark.parametrize(
    ("device", "cpu_bf16", "cuda_bf16", "expected"),
    [
        ("cpu", True, False, "bf16"),  # AMX or AVX512-BF16
        ("cpu", False, False, "fp32"),  # AVX2 only, or AVX-512 without BF16: bf16 would be emulated
        ("cuda", False, True, "bf16"),  # Ampere and later
        ("cuda", False, False, "fp16"),  # T4, V100: fp16 with loss scaling
        ("mps", True, True, "fp32"),
        ("xpu", True, True, "fp32"),
    ],
)
def test_auto_picks_what_the_hardware_does_natively(
    monkeypatch: pytest.MonkeyPatch, device: str, cpu_bf16: bool, cuda_bf16: bool, expected: str
) -> None:
    patch_hardware(monkeypatch, cpu_bf16, cuda_bf16)
    choice = resolve_precision("auto", None, None, device)
    assert choice.name == expected
    assert choice.reason.startswith("auto:")


@pytest.mark.parametrize(
    ("mkldnn_bf16", "avx512_bf16", "amx", "native"),
    [(True, True, False, True), (True, False, True, True), (True, False, False, False), (False, True, True, False)],
)
def test_native_cpu_bf16_needs_the_instructions_and_onednn(
    monkeypatch: pytest.MonkeyPatch, mkldnn_bf16: bool, avx512_bf16: bool, amx: bool, native: bool
) -> None:
    """oneDNN's probe says yes on AVX-512 CPUs without BF16 (emulated there), and no where ONEDNN_MAX_CPU_ISA
    forbids bf16: native needs both."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: mkldnn_bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert cpu_has_native_bf16() is native


def test_explicit_precision_and_the_trainer_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_hardware(monkeypatch, cpu_bf16=True, cuda_bf16=True)
    assert resolve_precision("fp32", None, None, "cpu").name == "fp32"
    assert resolve_precision("bf16", None, None, "cpu").name == "bf16"
    # Given either flag, the flags decide, as before precision existed: --bf16 false means float32.
    assert resolve_precision("auto", False, None, "cpu").name == "fp32"
    assert resolve_precision("auto", None, True, "cuda").name == "fp16"
    assert resolve_precision("bf16", True, False, "cpu").name == "bf16"
    with pytest.raises(UsageError, match="precision fp32 contradicts --bf16 True"):
        resolve_precision("fp32", True, None, "cpu")
    with pytest.raises(UsageError, match="both true"):
        resolve_precision("auto", True, True, "cuda")
    with pytest.raises(UsageError, match="precision must be one of auto, bf16, fp16, fp32, got 'half'"):
        resolve_precision("half", None, None, "cpu")


def test_auto_keeps_a_resumed_run_and_follows_the_accelerate_config(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_hardware(monkeypatch, cpu_bf16=False)
    assert resolve_precision("auto", None, None, "cpu", recorded="bf16").name == "bf16"
    assert resolve_precision("auto", None, None, "cuda", launcher="fp16").name == "fp16"
    assert resolve_precision("auto", None, None, "cpu", launcher="no").name == "fp32"


def test_emulated_bf16_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_hardware(monkeypatch, cpu_bf16=False)
    warning = emulation_warning(resolve_precision("bf16", None, None, "cpu"), "cpu")
    assert warning is not None and "emulated" in warning and "--precision auto" in warning
    assert emulation_warning(resolve_precision("fp32", None, None, "cpu"), "cpu") is None
    patch_hardware(monkeypatch, cpu_bf16=True)
    assert emulation_warning(resolve_precision("bf16", None, None, "cpu"), "cpu") is None


def _arguments(tmp_path: Path, **values: object) -> MixCSETrainingArguments:
    return MixCSETrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **values)


def test_arguments_hold_the_effective_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    patch_hardware(monkeypatch, cpu_bf16=True)
    args = _arguments(tmp_path)
    assert (args.precision, args.bf16, args.fp16, args.mixed_precision) == ("bf16", True, False, "bf16")
    patch_hardware(monkeypatch, cpu_bf16=False)
    args = _arguments(tmp_path)
    assert (args.precision, args.bf16, args.fp16, args.mixed_precision) == ("fp32", False, False, "no")
    assert _arguments(tmp_path, bf16=True).precision == "bf16"
    with pytest.raises(UsageError, match="fp16 mixed precision needs a GPU"):
        _arguments(tmp_path, precision="fp16")


@pytest.mark.parametrize(
    ("caps", "native"),
    [
        ({}, True),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False),  # AVX-512 without bf16: oneDNN's own probe still says yes
        ({"ONEDNN_MAX_CPU_ISA": "avx512_core_vnni"}, False),  # oneDNN reads the name in any case
        ({"DNNL_MAX_CPU_ISA": "AVX2"}, False),  # oneDNN's earlier name for the cap
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
        ({"ONEDNN_MAX_CPU_ISA": "AVX10_1_512_AMX"}, True),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "DNNL_MAX_CPU_ISA": "AVX2"}, True),  # ONEDNN_ first
    ],
)
def test_native_cpu_bf16_follows_onednns_isa_cap(
    monkeypatch: pytest.MonkeyPatch, caps: dict[str, str], native: bool
) -> None:
    """On an AMX chip, where oneDNN's probe and the chip's flags all say yes, bf16 is native only if oneDNN's ISA
    cap lets it run bf16 instructions: auto picks by what oneDNN will run, and asking for bf16 then warns."""
    for name in precision.ONEDNN_ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    for name, value in caps.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", cpu_has_native_bf16)  # the real probe, not the tests' own
    assert cpu_has_native_bf16() is native
    assert resolve_precision("auto", None, None, "cpu").name == ("bf16" if native else "fp32")
    assert (emulation_warning(resolve_precision("bf16", None, None, "cpu"), "cpu") is None) is native


def test_a_resumed_run_keeps_its_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run started in bf16 resumes in bf16 where auto alone would pick float32; overwriting chooses afresh."""
    patch_hardware(monkeypatch, cpu_bf16=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN_FILE).write_text(json.dumps({"run_id": "x", "settings": {"bf16": True, "fp16": False}}))
    args = _arguments(tmp_path)
    assert args.precision == "bf16" and args.precision_choice.reason == "auto: the resumed run's precision"
    assert _arguments(tmp_path, overwrite_output_dir=True).precision == "fp32"


def test_a_run_logs_records_and_writes_its_precision(
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: str,
    tiny_corpus: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    patch_hardware(monkeypatch, cpu_bf16=True)
    out = tmp_path / "out"
    flags = ["--model_name_or_path", tiny_model_dir, "--train_file", str(tiny_corpus), "--output_dir", str(out)]
    flags += ["--max_steps", "2", "--per_device_train_batch_size", "4", "--save_strategy", "no", "--do_eval", "false"]
    with caplog.at_level(logging.INFO):
        assert main([*flags, "--report_to", "none", "--do_train", "true"]) == 0
    assert "Precision bf16 (auto: the CPU has native bf16 (AMX or AVX512-BF16))" in caplog.text
    assert "emulated" not in caplog.text
    resolved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert (resolved["precision"], resolved["bf16"]) == ("bf16", True)
    assert json.loads((out / RUN_FILE).read_text())["precision"] == "bf16"

    patch_hardware(monkeypatch, cpu_bf16=False)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([*flags, "--report_to", "none", "--precision", "bf16", "--overwrite_output_dir", "true"]) == 0
    warnings = [record.message for record in caplog.records if record.levelno == logging.WARNING]
    assert any("bf16 on this CPU is emulated" in message for message in warnings)
