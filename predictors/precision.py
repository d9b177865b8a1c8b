"""Forward-pass precision: what the `precision` setting asks for, and what a model runs in on its device.

fp16 runs only on CUDA: a model on the CPU asking for it refuses to start. bf16 runs where the device
computes in bf16 natively; elsewhere torch emulates it, orders of magnitude slower than fp32
(docs/gpu.md#precision), so a model asking for bf16 there is served in fp32, with one warning at load
and the effective precision in the status endpoint and the metrics. Native means:

- on a CPU: torch reports an AVX-512 capability (``torch.backends.cpu.get_cpu_capability()``, which
  ``ATEN_CPU_CAPABILITY`` lowers), the CPU has AVX512_BF16 or AMX_BF16 instructions (Arm: BF16), and
  ``ONEDNN_MAX_CPU_ISA``, if set, does not keep oneDNN below them;
- on CUDA: compute capability 8.0 (Ampere) or newer, or ROCm.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from predictors.device import CPU
from predictors.torch_compat import cpu_bf16_instructions

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16")
#: the autocast dtype of each reduced precision
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: oneDNN's ISA levels (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16, where its bf16 kernels are emulated
ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})


@dataclass(frozen=True)
class Bf16Support:
    """Whether a device computes in bf16 natively, and the facts that decided it (for logs and status)."""

    native: bool
    facts: str


def cpu_bf16_support(capability: str, instructions: frozenset[str], onednn_max_isa: str = "") -> Bf16Support:
    """The CPU rule (module docstring) on facts read by `read_cpu_bf16_support` or stated by a test."""
    listed = "+".join(sorted(instructions)) or "none"
    facts = f"torch CPU capability {capability}, bf16 instructions {listed}"
    if onednn_max_isa:
        facts += f", ONEDNN_MAX_CPU_ISA={onednn_max_isa}"
    vector_unit = capability.upper().startswith("AVX512") or "BF16" in instructions  # Arm reports no AVX
    limited = onednn_max_isa.upper() in ONEDNN_ISAS_WITHOUT_BF16
    return Bf16Support(bool(instructions) and vector_unit and not limited, facts)


def read_cpu_bf16_support() -> Bf16Support:
    """This machine's CPU, as torch and oneDNN see it in this process."""
    return cpu_bf16_support(torch.backends.cpu.get_cpu_capability(), cpu_bf16_instructions(),
                            os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def read_bf16_support(device: torch.device) -> Bf16Support:
    """`read_cpu_bf16_support` for the CPU; for CUDA the device's compute capability."""
    if device.type == "cpu":
        return read_cpu_bf16_support()
    if device.type == "cuda":
        if torch.version.hip:
            return Bf16Support(True, "ROCm")
        major, minor = torch.cuda.get_device_capability(device)
        return Bf16Support(major >= 8, f"CUDA compute capability {major}.{minor}")
    return Bf16Support(False, f"device type {device.type}")


@dataclass(frozen=True)
class ResolvedPrecision:
    """What a model's forward pass runs in: on its device, and on the CPU (a CUDA model's out-of-memory
    fallback replica); `reason` says why `effective` is not `requested` ("" when it is)."""

    requested: Precision
    effective: Precision
    on_cpu: Precision
    reason: str = ""

    def on(self, device: torch.device) -> Precision:
        return self.on_cpu if device.type == "cpu" else self.effective


def resolve_precision(requested: str, device: torch.device,
                      bf16_support: Callable[[torch.device], Bf16Support] = read_bf16_support) -> ResolvedPrecision:
    """Decide at start-up: fp16 off CUDA is refused (ValueError), bf16 without native support is fp32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {requested!r}")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device but the model runs on {device}; "
                         "use precision bf16 (or fp32) on the CPU")
    if requested == "fp32":
        return ResolvedPrecision("fp32", "fp32", "fp32")
    if requested == "fp16":  # on CUDA; the CPU replica has no fp16 autocast worth running
        return ResolvedPrecision("fp16", "fp16", "fp32")
    support = bf16_support(device)
    cpu_native = support.native if device.type == "cpu" else bf16_support(CPU).native
    on_cpu: Precision = "bf16" if cpu_native else "fp32"
    if support.native:
        return ResolvedPrecision("bf16", "bf16", on_cpu)
    return ResolvedPrecision(
        "bf16", "fp32", "fp32",
        f"{device} has no native bf16 ({support.facts}): emulated bf16 runs far slower than fp32, "
        "so the model is served in fp32",
    )


def autocast_to(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """Autocast to `precision` on `device` for fp16/bf16; fp32 runs unchanged."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
