"""The hardware side of the efficiency ratio: FLOPs per item and the machine's dense FP32 peak.

- ``count_flops(fn)``: the floating-point operations `fn()` performs, counted by torch's own
  ``torch.utils.flop_counter.FlopCounterMode`` (a dispatch mode: it sees every aten op on the calling
  thread). It counts matrix products and convolutions (mm, addmm, bmm, baddbmm, convolution,
  scaled-dot-product attention) as 2 x multiply-accumulates; it does NOT count element-wise ops,
  normalisation, softmax, pooling, interpolation, custom or C++-extension ops, nor work done outside
  torch (OpenCV, NumPy, PIL). For convolutional and transformer networks the counted ops are nearly all
  of the arithmetic, so the count is a slight under-estimate and the achieved GFLOP/s a lower bound.
- ``measure_peak``: a large square FP32 ``torch.mm`` on all intra-op threads, best of a few repeats:
  what this machine's BLAS reaches on the friendliest dense work there is; the practical roof for a
  model's achieved GFLOP/s.

Run as ``python -m bench.hardware [--size 2048 --repeats 5 --device cpu --dtype fp32]`` (a child
process, so that it gets the same OMP/MKL thread settings as the model children); prints one
``BENCH_JSON`` line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def count_flops(fn: Callable[[], Any], helper: Executor | None = None) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per aten op name) of one call of `fn` on this thread, plus, with `helper` (a
    one-thread executor such as a model's device thread), what `fn` has that thread do meanwhile: a
    dispatch mode is per thread, so a counter is entered there too for the duration."""
    counters = [FlopCounterMode(display=False)]
    if helper is not None:
        counters.append(FlopCounterMode(display=False))
        helper.submit(counters[1].__enter__).result()
    try:
        with counters[0]:
            fn()
    finally:
        if helper is not None:
            helper.submit(counters[1].__exit__, None, None, None).result()
    per_op: dict[str, int] = {}
    for counter in counters:
        for op, n in counter.get_flop_counts().get("Global", {}).items():
            per_op[str(op)] = per_op.get(str(op), 0) + int(n)
    return sum(int(counter.get_total_flops()) for counter in counters), per_op


def mm_flops(n: int, m: int, k: int) -> int:
    """FLOPs of an [n, k] x [k, m] product: n*m dot products of length k, 2 FLOPs per multiply-add."""
    return 2 * n * m * k


def gflops_per_s(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9


def measure_peak(
    size: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> dict[str, Any]:
    """Best-of-`repeats` GFLOP/s of a square `size` matrix product on the current torch threads (or GPU)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    out = torch.empty(size, size, dtype=dtype, device=device)

    def synchronize() -> None:
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)

    torch.mm(a, b, out=out)  # first call: allocations, BLAS thread start-up, kernel selection
    synchronize()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize()
        times.append(time.perf_counter() - started)
    flops = mm_flops(size, size, size)
    best = min(times)
    return {
        "op": f"torch.mm {size}x{size} @ {size}x{size} {str(dtype).replace('torch.', '')}",
        "flops_per_call": flops,
        "repeats": repeats,
        "best_s": round(best, 6),
        "median_s": round(sorted(times)[len(times) // 2], 6),
        "peak_gflops": round(gflops_per_s(flops, best), 2),
        "device": str(out.device),
        "torch_num_threads": torch.get_num_threads(),
    }


def efficiency(flops_per_item: float | None, items_per_s: float | None, peak_gflops: float | None) -> dict[str, Any]:
    """Achieved GFLOP/s at `items_per_s` and its fraction of the measured peak (None where unknown)."""
    if not flops_per_item or not items_per_s:
        return {"gflops": None, "fraction_of_peak": None}
    achieved = flops_per_item * items_per_s / 1e9
    return {  # 4 significant digits: the tiny model's GFLOP/s are millionths
        "gflops": float(f"{achieved:.4g}"),
        "fraction_of_peak": float(f"{achieved / peak_gflops:.4g}") if peak_gflops else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    args = parser.parse_args()
    print("BENCH_JSON " + json.dumps(measure_peak(args.size, args.repeats, DTYPES[args.dtype], args.device)))


if __name__ == "__main__":
    main()
