"""Every reliance on torch's private internals, so that upgrading torch means reading this file and
`tests/unit/test_torch_compat.py`.

- `cpu_bf16_instructions`: torch's CPU feature checks (`torch.cpu._is_avx512_bf16_supported`,
  `_is_amx_tile_supported`; on Arm `torch.ops.mkldnn._is_mkldnn_bf16_supported`) read the CPUID bits
  through cpuinfo, the library torch's own kernels dispatch on. Where they are gone, Linux's
  /proc/cpuinfo flags answer for x86.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

import torch

#: /proc/cpuinfo's names of the x86 instruction sets that compute in bf16 natively
_CPUINFO_FLAGS = {"avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX_BF16"}


def cpu_bf16_instructions() -> frozenset[str]:
    """The CPU's native bf16 instruction sets: AVX512_BF16 and AMX_BF16 on x86, BF16 on Arm."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return frozenset({"BF16"}) if supported is not None and supported() else frozenset()
    avx512_bf16 = _private(torch.cpu, "_is_avx512_bf16_supported")
    amx = _private(torch.cpu, "_is_amx_tile_supported")
    if avx512_bf16 is None or amx is None:
        return proc_cpuinfo_bf16_instructions()
    # AMX's tile unit comes with AMX-BF16 on every CPU that has it (Sapphire Rapids and later).
    return frozenset(name for name, present in (("AVX512_BF16", avx512_bf16()), ("AMX_BF16", amx())) if present)


def proc_cpuinfo_bf16_instructions(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The same from the kernel's CPU flags (x86 Linux); empty where the file or the flags are absent."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return frozenset(name for flag, name in _CPUINFO_FLAGS.items() if flag in flags)
    return frozenset()


def _private(module: object, name: str) -> Callable[[], bool] | None:
    function = getattr(module, name, None)
    return function if callable(function) else None
