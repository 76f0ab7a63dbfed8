"""The floating-point precision a run trains in. ``precision: auto`` (the default) picks what the hardware does
natively, since emulated bf16 on a CPU without AMX or AVX512-BF16 trains many times slower than float32:

- bf16 on a CUDA GPU with bf16, or on a CPU with AMX or AVX512-BF16 that oneDNN may use (``ONEDNN_MAX_CPU_ISA``
  can cap it below them);
- fp16 with loss scaling on a CUDA GPU without bf16 (T4, V100);
- float32 everywhere else (other CPUs, Apple MPS, other accelerators).

The Trainer's own ``--bf16`` / ``--fp16`` flags, when given, decide as they always have; a resumed run keeps the
precision it was started with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mixcse_hf.errors import UsageError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ONEDNN_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
"""Where oneDNN reads its cap on the instruction sets it uses (the first one set; DNNL_ is its earlier name)."""
ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
"""oneDNN's ISA names below its bf16 instructions (AVX512_CORE_BF16, AMX): capped there, it emulates bf16 on any
chip. AVX2_VNNI_2 converts to and from bf16 but has no bf16 dot product."""


@dataclass(frozen=True)
class Precision:
    """A run's effective precision (``bf16``, ``fp16`` or ``fp32``) and why it was chosen."""

    name: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def fp16(self) -> bool:
        return self.name == "fp16"


def onednn_isa_cap() -> str | None:
    """The ISA that ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) caps oneDNN at, upper-cased as oneDNN reads it;
    None when unset."""
    for name in ONEDNN_ISA_CAPS:
        if value := os.environ.get(name):
            return value.strip().upper()
    return None


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, and oneDNN allowed to use them: what oneDNN will actually run. Its own probe says yes on
    AVX-512 CPUs without BF16, where it emulates bf16, and under a cap of AVX512_CORE; the chip's flags ignore the
    cap; so the cap is read here (:func:`onednn_isa_cap`)."""
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    if onednn_isa_cap() in ISAS_WITHOUT_BF16:
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cuda_has_bf16() -> bool:
    """Native bf16 on the current CUDA device (Ampere and later), not the emulation older GPUs offer."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def automatic_precision(device_type: str) -> Precision:
    """What ``precision: auto`` picks on a device of type ``device_type`` (``cpu``, ``cuda``, ``mps``…)."""
    if device_type == "cuda":
        if cuda_has_bf16():
            return Precision("bf16", "auto: the GPU has native bf16")
        return Precision("fp16", "auto: the GPU has no native bf16, so fp16 with loss scaling")
    if device_type == "cpu":
        if cpu_has_native_bf16():
            return Precision("bf16", "auto: the CPU has native bf16 (AMX or AVX512-BF16)")
        return Precision(
            "fp32",
            "auto: the CPU has no native bf16 (no AMX or AVX512-BF16, or oneDNN capped below them), where bf16 is "
            "emulated",
        )
    return Precision("fp32", f"auto: no mixed precision is chosen automatically on {device_type}")


def precision_of_flags(bf16: bool, fp16: bool) -> str:
    return "bf16" if bf16 else "fp16" if fp16 else "fp32"


def resolve_precision(
    requested: str,
    bf16: bool | None,
    fp16: bool | None,
    device_type: str,
    recorded: str | None = None,
    launcher: str | None = None,
) -> Precision:
    """The precision to train in.

    Args:
        requested: the ``precision`` argument (one of :data:`PRECISIONS`).
        bf16, fp16: the Trainer's flags; ``None`` when not given. Given either, the flags decide.
        device_type: the device training runs on.
        recorded: the precision of the run being resumed, if any: ``auto`` keeps it.
        launcher: ``mixed_precision`` of the ``accelerate launch`` config (``ACCELERATE_MIXED_PRECISION``), which
            ``auto`` follows when it names one, as the Trainer does when its flags are off.
    """
    if requested not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if bf16 is None and fp16 is None:
        if requested != "auto":
            return Precision(requested, "precision set in the config or flags")
        if recorded is not None:
            return Precision(recorded, "auto: the resumed run's precision")
        if launcher in ("bf16", "fp16"):
            return Precision(launcher, "auto: mixed_precision of the accelerate config")
        return automatic_precision(device_type)
    if bf16 and fp16:
        raise UsageError("bf16 and fp16 are both true; pass --precision bf16 or --precision fp16 instead of the flags")
    from_flags = precision_of_flags(bool(bf16), bool(fp16))
    if requested not in ("auto", from_flags):
        raise UsageError(
            f"precision {requested} contradicts --bf16 {bool(bf16)} / --fp16 {bool(fp16)}; set only precision "
            f"(bf16, fp16, fp32 or auto) and drop the bf16/fp16 flags"
        )
    return Precision(from_flags, "set by the bf16/fp16 flags")


def emulation_warning(precision: Precision, device_type: str) -> str | None:
    """A warning for bf16 on a CPU that only emulates it, else None."""
    if precision.bf16 and device_type == "cpu" and not cpu_has_native_bf16():
        return (
            "bf16 on this CPU is emulated (no AMX or AVX512-BF16, or ONEDNN_MAX_CPU_ISA caps oneDNN below them): "
            "training is many times slower than in "
            "float32; pass --precision auto (or fp32) unless you need bf16 here"
        )
    return None
