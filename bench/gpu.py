"""``python -m bench --profile gpu``: every model's in-process ceiling on one GPU, fp32 and reduced precision.

For each model (``--model``, default all four with ``--model all``): batch sizes 1, 2, 4, ... 64
(``--gpu-max-batch``), each timed for ~1 s (at least 2 iterations) after a warm-up of every shape, in
fp32 and in fp16 (bf16 when ``--device cpu``, where fp16 is refused), through the predictor's own forward
(autocast as the server's ``precision`` setting does); the FLOPs per item counted once (fp32); the
device's dense matrix-product peak in both precisions; achieved GFLOP/s and fraction of peak per row.
Sized for about 5 minutes on one GPU (4 models x 2 precisions x 7 batch sizes x ~1.5 s, plus
8 loads); the server sections are not part of it (on a GPU the ceiling is the question first).

    .venv/bin/python -m bench --profile gpu --model all --device cuda
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.hardware import efficiency
from bench.harness import run_child_json, say
from bench.permodel import PLANS, batch_sizes

SECONDS_PER_BATCH_SIZE = 1.0
MIN_ITERATIONS = 2
#: matrix side of the peak measurement: 4096 saturates a GPU; on a CPU (the profile's plumbing check)
#: 512 keeps it to seconds
PEAK_SIZE = {"cuda": 4096, "cpu": 512}


def reduced_precision(device: str) -> str:
    """fp16 on CUDA (tensor cores); bf16 elsewhere (the server refuses fp16 off CUDA)."""
    return "fp16" if device.startswith("cuda") else "bf16"


def measure(kinds: list[str], args: Any, env: dict[str, str]) -> dict[str, Any]:
    device = args.device
    precisions = ["fp32", reduced_precision(device)]
    peaks = {}
    for precision in precisions:
        say(f"gpu profile: {device} peak, {precision}")
        peaks[precision] = run_child_json(
            [sys.executable, "-m", "bench.hardware", "--size", str(PEAK_SIZE[device.split(":")[0]]), "--repeats", "10",
             "--device", device, "--dtype", precision],
            env,
            args.log_dir / f"hardware-{precision}.log",
            args.start_timeout,
        )
    sizes = batch_sizes(args.gpu_max_batch)
    models: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    for kind in kinds:
        plan = PLANS[kind]
        written = run_child_json(
            [sys.executable, "-m", "bench.models", str(args.work_dir), "--kind", kind,
             "--max-batch-size", str(plan["max_batch_size"]), "--max-latency-ms", "5", "--max-queue", "64",
             "--overload-max-queue", str(2 * plan["max_batch_size"])],
            env,
            args.log_dir / f"models-{kind}.log",
            args.start_timeout,
        )
        directory = Path(written["repository"]) / "model-batch"
        runs: dict[str, Any] = {}
        flops_per_item = None
        for precision in precisions:
            say(f"gpu profile: {kind} {precision}, batch sizes {sizes}")
            child = run_child_json(
                [sys.executable, "-m", "bench.inprocess", "--raw-dir", str(directory),
                 "--batch-sizes", ",".join(map(str, sizes)), "--seconds", str(SECONDS_PER_BATCH_SIZE),
                 "--min-iterations", str(MIN_ITERATIONS), "--device", device, "--precision", precision,
                 *(["--flops"] if precision == "fp32" else [])],
                env,
                args.log_dir / f"inprocess-{kind}-{precision}.log",
                args.start_timeout,
            )
            raw, environment = child["raw"], child["environment"]
            if precision == "fp32":
                flops_per_item = raw["flops"].get("forward_per_item")
            for row in raw["batches"]:
                row.update(efficiency(flops_per_item, row["items_per_s"], peaks[precision]["peak_gflops"]))
            runs[precision] = raw
        models[kind] = {"forward_flops_per_item": flops_per_item, "precisions": runs}
    return {"device": device, "precisions": precisions, "peaks": peaks, "batch_sizes": sizes, "models": models,
            "environment": environment}
