"""torch's private CPU feature checks (`predictors.torch_compat`): still there, and in agreement with the
kernel's CPU flags on this machine; the /proc/cpuinfo reading they fall back to."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from predictors.torch_compat import cpu_bf16_instructions, proc_cpuinfo_bf16_instructions

X86_LINUX = platform.machine() == "x86_64" and Path("/proc/cpuinfo").exists()


@pytest.mark.skipif(not X86_LINUX, reason="compares torch's CPUID reading with x86 Linux's /proc/cpuinfo flags")
def test_torch_reads_the_bf16_instructions_the_kernel_lists() -> None:
    assert callable(getattr(torch.cpu, "_is_avx512_bf16_supported", None))  # else the fallback answers alone
    assert callable(getattr(torch.cpu, "_is_amx_tile_supported", None))
    assert cpu_bf16_instructions() == proc_cpuinfo_bf16_instructions()


def test_proc_cpuinfo_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 "
                       "amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert proc_cpuinfo_bf16_instructions(cpuinfo) == {"AVX512_BF16", "AMX_BF16"}
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert proc_cpuinfo_bf16_instructions(cpuinfo) == frozenset()
    assert proc_cpuinfo_bf16_instructions(tmp_path / "absent") == frozenset()
