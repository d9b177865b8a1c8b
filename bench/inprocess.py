"""In-process measurements (no server, no HTTP), run as a child process; prints one JSON object.

- ``raw``: the predictor's own forward pass (e.g. `GeneralRecognitionPredictor.forward` via its
  `DeviceRunner`, i.e. exactly what the server's device thread runs) on prepared tensors, at
  each batch size: the throughput ceiling. Also the per-image preparation cost (JPEG decode + resize +
  crop + normalise) that the server pays on top, in its worker threads.
  With ``--flops`` it also counts the FLOPs of one item's ``prepare`` and of its batch-1 ``forward``
  (`bench.hardware.count_flops`), and it reports the resident memory (RSS) the load added.
- ``path``: the tiny model's whole predictor path for one v2 binary request, in process: parse the
  body, ``preprocess`` -> ``predict`` (through the batcher) -> ``postprocess``; the server's p50 minus
  this p50 is what HTTP, KServe's data plane and the client add.

This process imports the server's model code (and so KServe); the load generator never does.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from prometheus_client import CollectorRegistry

from bench.common import PAYLOADS, latency_summary, model_instance, v2_binary_body
from bench.hardware import count_flops
from devtools.images import sample_jpeg
from devtools.procs import rss_mb


def _load(directory: Path, workers: ThreadPoolExecutor, device: str = "cpu", precision: str = "fp32") -> Any:
    """The loaded `ModelRuntime` of `directory`, configured by the server's own merge (settings +
    predictor.json), as the server builds it."""
    from predictors.models.registry import model_entry, predictor_class
    from predictors.runtime import ModelRuntime
    from predictors.settings import Settings
    from predictors.telemetry.metrics import Metrics

    entry = model_entry(directory.name, directory, Settings(device=device, precision=precision))
    predictor = predictor_class(entry.predictor)(entry.name, entry.directory, entry.config)
    runtime = ModelRuntime(predictor, Metrics(CollectorRegistry()), workers)
    runtime.load()
    return runtime


def _decoded(instance: dict[str, Any]) -> dict[str, Any]:
    """A `model_instance` as `prepare` gets it: the image decoded to RGB, the texts as they are."""
    from PIL import Image

    image = Image.open(io.BytesIO(instance["image"]))
    image.load()
    return {**instance, "image": image.convert("RGB")}


def raw(
    directory: Path,
    batch_sizes: list[int],
    seconds: float,
    min_iterations: int,
    flops: bool = False,
    device: str = "cpu",
    precision: str = "fp32",
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from predictors.models.registry import predictor_class, read_predictor_file

    workers = ThreadPoolExecutor(2)
    predictor = read_predictor_file(directory).predictor or directory.name
    predictor_class(predictor)  # imports the model's module (and KServe) before the memory reading
    rss_before = rss_mb()
    started = time.perf_counter()
    runtime = _load(directory, workers, device, precision)
    model = runtime.predictor
    load_s = time.perf_counter() - started
    rss_after = rss_mb()
    params = model.parse_parameters(parameters or {})
    payload_kind = predictor if predictor in PAYLOADS else "image-classification"
    # the face model's prepare runs a detector: fewer distinct pictures keep the preparation bounded
    instances = [model_instance(payload_kind, seed) for seed in range(8 if predictor != "face-enhancement" else 2)]

    prep_times = []
    for _ in range(3 if predictor != "face-enhancement" else 1):
        for instance in instances:
            t0 = time.perf_counter()
            model.prepare(_decoded(instance), params)
            prep_times.append(time.perf_counter() - t0)
    prepared = [model.prepare(_decoded(instance), params) for instance in instances]

    batches = {size: [prepared[i % len(prepared)] for i in range(size)] for size in batch_sizes}
    for batch in batches.values():
        runtime.run_forward(batch)  # warm every shape
    # Round-robin over the batch sizes, so that a noisy neighbour slows all of them alike.
    times: dict[int, list[float]] = {size: [] for size in batch_sizes}
    begin = time.perf_counter()
    rounds = 0
    while rounds < min_iterations or time.perf_counter() - begin < seconds * len(batch_sizes):
        for size, batch in batches.items():
            t0 = time.perf_counter()
            results = runtime.run_forward(batch)
            times[size].append(time.perf_counter() - t0)
            assert len(results) == size
        rounds += 1
    counted: dict[str, Any] = {}
    if flops:  # after the timing: the counter slows the ops it watches
        one = _decoded(instances[0])
        # prepare may run model work on the device thread (face detection): counted there too
        prepare_flops, prepare_ops = count_flops(lambda: model.prepare(one, params), runtime.device_executor)
        forward_flops, forward_ops = count_flops(lambda: runtime.run_forward(prepared[:1]))
        counted = {
            "prepare_per_item": prepare_flops,
            "forward_per_item": forward_flops,
            "per_item": prepare_flops + forward_flops,
            "prepare_ops": prepare_ops,
            "forward_ops": forward_ops,
            "counter": "torch.utils.flop_counter.FlopCounterMode, batch 1",
        }
    rows = []
    for size in batch_sizes:
        elapsed = sum(times[size])
        rows.append(
            {
                "batch_size": size,
                "iterations": len(times[size]),
                "items_per_s": round(size * len(times[size]) / elapsed, 3),
                "batch_p50_ms": latency_summary(times[size])["p50_ms"],
                "per_item_ms": round(elapsed / (size * len(times[size])) * 1000, 3),
            }
        )
    workers.shutdown()
    return {
        "predictor": predictor,
        "device": str(runtime.device),
        "precision": precision,
        # what the forward pass ran in: fp32 where bf16 was asked for on a device without native bf16
        "effective_precision": runtime.precision.effective,
        "payload": {"kind": payload_kind, **{k: v for k, v in PAYLOADS[payload_kind].items()}},
        "load_s": round(load_s, 3),
        "rss_mb_before_load": rss_before,
        "rss_mb_after_load": rss_after,
        "load_added_rss_mb": round(rss_after["VmRSS"] - rss_before["VmRSS"], 1),
        "flops": counted,
        "prepare_per_image": latency_summary(prep_times),
        "batches": rows,
    }


async def _path_once(model: Any, body: bytes, head_length: int) -> None:
    """One request through the server's hooks (the KServe adapter onto the runtime), without HTTP."""
    from predictors.codecs.v2 import parse_binary_request

    request = parse_binary_request(body, head_length, model.name)
    pending = await model.preprocess(request, {})
    pending = await model.predict(pending, {})
    await model.postprocess(pending, {})


def path(directory: Path, count: int, image_size: int) -> dict[str, Any]:
    async def measure() -> dict[str, Any]:
        workers = ThreadPoolExecutor(4)
        from predictors.dataplane.kserve_model import KServeModel

        model = KServeModel(_load(directory, workers))
        body, head_length = v2_binary_body(sample_jpeg(0, (image_size, image_size)))
        for _ in range(min(50, count)):
            await _path_once(model, body, head_length)
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            await _path_once(model, body, head_length)
            times.append(time.perf_counter() - t0)
        await model.runtime.aclose()
        workers.shutdown()
        return {"model": directory.name, "requests": count, **latency_summary(times)}

    return asyncio.run(measure())


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw-dir", type=Path)
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--min-iterations", type=int, default=2)
    parser.add_argument("--path-dirs", default="", help="comma-separated tiny model directories")
    parser.add_argument("--path-count", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--flops", action="store_true", help="count FLOPs per item of prepare and forward")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--parameters", type=json.loads, default={}, help="request parameters (JSON)")
    args = parser.parse_args()
    out: dict[str, Any] = {"environment": environment()}
    if args.raw_dir:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s]
        out["raw"] = raw(
            args.raw_dir.resolve(),
            sizes,
            args.seconds,
            args.min_iterations,
            args.flops,
            args.device,
            args.precision,
            args.parameters,
        )
    if args.path_dirs:
        out["path"] = [
            path(Path(d).resolve(), args.path_count, args.image_size) for d in args.path_dirs.split(",") if d
        ]
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
