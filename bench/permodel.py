"""Per-model sections: every model at its ceiling, through the server, against the hardware.

For each model (``--model face-enhancement|visual-entailment|image-classification|general-recognition|all``):

1. the raw in-process ceiling (`bench.inprocess`: the predictor's own forward via its `DeviceRunner`,
   items/s by batch size) and the FLOPs of one item's ``prepare`` and ``forward`` (`bench.hardware`);
2. the server, one process per batching mode serving only that model (``--models model-batch`` or
   ``model-nobatch``), closed loop at each concurrency level: req/s, p50, p99;
3. start-up of that process: wall time from process start to the model's ``/ready``, and the server's
   own split: ``predictors_model_load_seconds`` (load + warm-up) and its log line ``ready on DEVICE in
   T s (weights W s, warm-up U s)``;
4. resident memory: the server's RSS (``/proc/PID/status`` VmRSS) once ready minus the RSS of an idle
   server (a server serving only the near-zero ``tiny`` model) = what the model adds (weights, its
   libraries' imports, the warm-up's allocations); VmHWM after the load is the peak; the in-process
   child reports the RSS its ``load()`` added, for comparison;
5. efficiency: achieved GFLOP/s = FLOPs per item x items/s, for the raw forward (forward FLOPs x raw
   items/s at the best batch size) and for the server at saturation ((prepare + forward) FLOPs x best
   server req/s, batching on or off), each as a fraction of the machine's dense FP32 peak measured in the same run.

This module runs in the load-generating process: it imports no model code; every model-side step runs in
a child process with the run's thread settings.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen
from bench.common import Request, model_instance, ratio, v1_instance_request
from bench.hardware import efficiency
from bench.harness import run_child_json, say
from devtools.procs import Child, free_port, rss_mb, start

REAL_MODELS = ("general-recognition", "image-classification", "face-enhancement", "visual-entailment")

#: per model: the batching of `model-batch` and the batch sizes of the raw ceiling. Face enhancement:
#: max 4 (= its default max_faces_per_forward, one GPEN pass per 4 faces; a batch of 8 would only queue).
PLANS: dict[str, dict[str, Any]] = {
    "general-recognition": {"max_batch_size": 8, "payload": "general-recognition"},
    "image-classification": {"max_batch_size": 8, "payload": "image-classification"},
    "visual-entailment": {"max_batch_size": 8, "payload": "visual-entailment"},
    "face-enhancement": {"max_batch_size": 4, "payload": "face-enhancement"},
    "tiny": {"max_batch_size": 8, "payload": "image-classification"},
}
#: a face-enhancement request at c=16 waits for 16 GPEN passes (several s each on a CPU)
REQUEST_TIMEOUT_S = 900.0
SATURATION_TARGET = 0.9

READY_LINE = re.compile(
    r"model (?P<model>\S+) ready on (?P<device>\S+) in (?P<total>[\d.]+) s "
    r"\(weights (?P<weights>[\d.]+) s, warm-up (?P<warmup>[\d.]+) s\)"
)
METRIC_LINE = re.compile(r'^predictors_model_load_seconds\{model="(?P<model>[^"]+)"\} (?P<value>\S+)$', re.M)


def batch_sizes(maximum: int) -> list[int]:
    """1, 2, 4, ... below `maximum`, then `maximum`."""
    sizes, size = [], 1
    while size < maximum:
        sizes.append(size)
        size *= 2
    return [*sizes, maximum]


def parse_ready_line(log: str, model: str) -> dict[str, float] | None:
    """The server's own load / warm-up split for `model` from its log (None if it did not say)."""
    for match in READY_LINE.finditer(log):
        if match["model"] == model:
            return {
                "total_s": float(match["total"]),
                "weights_s": float(match["weights"]),
                "warmup_s": float(match["warmup"]),
            }
    return None


def parse_load_metric(exposition: str, model: str) -> float | None:
    for match in METRIC_LINE.finditer(exposition):
        if match["model"] == model:
            return float(match["value"])
    return None


def _serve(repository: Path, model: str, log_dir: Path, env: dict[str, str], tag: str) -> Child:
    port = free_port()
    return start(
        f"server-{tag}",
        [
            sys.executable, "-m", "predictors", "serve",
            "--model-repository", str(repository),
            "--models", model,
            "--http-port", str(port),
            "--grpc-port", str(free_port()),
            "--enable-grpc", "false",
            "--log-level", "INFO",  # the "ready on ... (weights, warm-up)" line
            "--no-access-log",
        ],
        port,
        log_dir,
        env,
    )


def _startup(server: Child, model: str, timeout: float) -> dict[str, Any]:
    wall = server.wait_ready([f"/v2/models/{model}/ready"], timeout)
    metrics = httpx.get(server.url + "/metrics", timeout=30, trust_env=False).text
    return {
        "process_start_to_ready_s": round(wall, 2),
        "load_seconds_metric": parse_load_metric(metrics, model),
        "server_log": parse_ready_line(server.log_tail(200_000), model),
        "rss_ready_mb": rss_mb(server.process.pid),
    }


def idle_server(repository: Path, log_dir: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """The reference: a server serving only the near-zero `tiny` model (the server's own footprint)."""
    server = _serve(repository, "tiny", log_dir, env, "idle")
    try:
        return _startup(server, "tiny", timeout)
    finally:
        server.stop()


async def _load_levels(url: str, requests: list[Request], levels: list[int], p: dict[str, Any],
                       warm: int) -> list[dict[str, Any]]:
    warmup = await loadgen.closed_loop(url, requests, warm, 600.0, warm, timeout=REQUEST_TIMEOUT_S)
    bad = [o for o in warmup.outcomes if o.status != 200]
    if bad:
        raise RuntimeError(f"warm-up against {url}{requests[0][0]} failed: {bad[:3]}")
    rows = []
    for level in levels:
        say(f"  concurrency {level}")
        result = await loadgen.closed_loop(
            url, requests, level, p["duration"], p["max_requests"], timeout=REQUEST_TIMEOUT_S
        )
        rows.append({"concurrency": level, **result.summary()})
    return rows


def measure_model(
    kind: str,
    args: Any,
    p: dict[str, Any],
    env: dict[str, str],
    idle: dict[str, Any],
    peak_gflops: float | None,
) -> dict[str, Any]:
    plan = PLANS[kind]
    max_batch = plan["max_batch_size"]
    options = p.get("model_options", {}).get(kind)
    parameters = p.get("model_parameters", {}).get(kind) or {}
    say(f"{kind}: model directories")
    written = run_child_json(
        [
            sys.executable, "-m", "bench.models", str(args.work_dir),
            "--kind", kind,
            "--max-batch-size", str(max_batch),
            "--max-latency-ms", str(args.max_latency_ms),
            "--max-queue", str(args.max_queue),
            "--overload-max-queue", str(2 * max_batch),
            *(["--options", json.dumps(options)] if options is not None else []),
        ],
        env,
        args.log_dir / f"models-{kind}.log",
        args.start_timeout,
    )
    repository = Path(written["repository"])
    sizes = [b for b in batch_sizes(max_batch) if b <= p["model_max_raw_batch"]]
    say(f"{kind}: in-process ceiling and FLOPs, batch sizes {sizes}")
    child = run_child_json(
        [
            sys.executable, "-m", "bench.inprocess",
            "--raw-dir", str(repository / "model-batch"),
            "--batch-sizes", ",".join(map(str, sizes)),
            "--seconds", str(p["raw_seconds"]),
            "--min-iterations", str(p["raw_min_iterations"]),
            "--flops",
            "--parameters", json.dumps(parameters),
        ],
        env,
        args.log_dir / f"inprocess-{kind}.log",
        args.start_timeout,
    )
    inprocess = child["raw"]
    instances = [model_instance(plan["payload"], seed) for seed in range(4)]

    servers: dict[str, Any] = {}
    for mode, model, warm in (("batching_on", "model-batch", max_batch), ("batching_off", "model-nobatch", 1)):
        say(f"{kind}: server, {mode}")
        server = _serve(repository, model, args.log_dir, env, f"{kind}-{mode}")
        try:
            startup = _startup(server, model, args.start_timeout)
            requests = [v1_instance_request(model, instance, parameters) for instance in instances]
            rows = asyncio.run(_load_levels(server.url, requests, p["model_levels"], p, min(warm, p["model_warm"])))
            memory_end = rss_mb(server.process.pid)
            alive = server.alive()
        finally:
            exit_code = server.stop()
        servers[mode] = {
            "model": model,
            "max_batch_size": max_batch if mode == "batching_on" else 1,
            "max_latency_ms": args.max_latency_ms,
            "startup": startup,
            "rss_end_mb": memory_end,
            "alive_at_end": alive,
            "exit_code": exit_code,
            "rows": rows,
        }
    return {**derive(inprocess, servers, idle, peak_gflops), "options": options, "parameters": parameters,
            "environment": child["environment"]}


def derive(inprocess: dict[str, Any], servers: dict[str, Any], idle: dict[str, Any],
           peak_gflops: float | None) -> dict[str, Any]:
    """The per-model summary: ceiling, saturation ratio, batching gain, start-up, memory, efficiency."""
    raw_rows = inprocess["batches"]
    # The ceiling is the best batch size, not the largest: on a CPU some models lose throughput per item
    # when batched (measured: face enhancement and visual entailment are fastest at batch 1).
    ceiling = max(raw_rows, key=lambda r: r["items_per_s"])
    on, off = servers["batching_on"]["rows"], servers["batching_off"]["rows"]
    # The server's saturation: its best configuration (batching on or off: one setting, max_batch_size)
    settings = [("batching_on", row) for row in on] + [("batching_off", row) for row in off]
    best_mode, best = max(settings, key=lambda mode_row: mode_row[1]["throughput_rps"])
    top = max(r["concurrency"] for r in on)
    on_top = next(r for r in on if r["concurrency"] == top)
    off_top = next((r for r in off if r["concurrency"] == top), None)
    flops = inprocess.get("flops") or {}
    startup = servers["batching_on"]["startup"]
    idle_rss = idle["rss_ready_mb"]["VmRSS"]
    saturation = ratio(best["throughput_rps"], ceiling["items_per_s"])
    return {
        "predictor": inprocess["predictor"],
        "payload": inprocess["payload"],
        "raw": inprocess,
        "server": servers,
        "summary": {
            "raw_items_per_s": ceiling["items_per_s"],
            "raw_batch_size": ceiling["batch_size"],
            "raw_batch1_items_per_s": min(raw_rows, key=lambda r: r["batch_size"])["items_per_s"],
            "server_best_mode": best_mode,
            "server_best_rps": best["throughput_rps"],
            "server_best_concurrency": best["concurrency"],
            "server_best_p50_ms": best["p50_ms"],
            "server_best_p99_ms": best["p99_ms"],
            "saturation_vs_raw": saturation,
            "saturation_target": SATURATION_TARGET,
            "saturation_met": saturation is not None and saturation >= SATURATION_TARGET,
            "batching_on_off_at": top,
            "batching_on_off_throughput": ratio(on_top["throughput_rps"], off_top["throughput_rps"])
            if off_top else None,
            "process_start_to_ready_s": startup["process_start_to_ready_s"],
            "load_seconds_metric": startup["load_seconds_metric"],
            "weights_s": (startup["server_log"] or {}).get("weights_s"),
            "warmup_s": (startup["server_log"] or {}).get("warmup_s"),
            "server_rss_mb": startup["rss_ready_mb"]["VmRSS"],
            "idle_server_rss_mb": idle_rss,
            "model_rss_mb": round(startup["rss_ready_mb"]["VmRSS"] - idle_rss, 1),
            "peak_rss_after_load_mb": servers["batching_on"]["rss_end_mb"].get("VmHWM"),
            "in_process_load_added_rss_mb": inprocess["load_added_rss_mb"],
            "flops_per_item": flops.get("per_item"),
            "forward_flops_per_item": flops.get("forward_per_item"),
            "prepare_flops_per_item": flops.get("prepare_per_item"),
            "raw_efficiency": efficiency(flops.get("forward_per_item"), ceiling["items_per_s"], peak_gflops),
            "server_efficiency": efficiency(flops.get("per_item"), best["throughput_rps"], peak_gflops),
        },
    }


def measure_all(kinds: list[str], args: Any, p: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Peak, the idle reference, then every model in turn (one model's processes at a time)."""
    say("hardware: dense FP32 peak (torch.mm)")
    peak = run_child_json(
        [sys.executable, "-m", "bench.hardware", "--size", str(p["peak_size"]), "--repeats",
         str(p["peak_repeats"])],
        env,
        args.log_dir / "hardware.log",
        args.start_timeout,
    )
    models: dict[str, Any] = {}
    idle: dict[str, Any] | None = None
    started = time.monotonic()
    for kind in kinds:
        if idle is None:
            # the repository of the first model holds `tiny`; write it first so the reference can start
            run_child_json(
                [sys.executable, "-m", "bench.models", str(args.work_dir), "--kind", "tiny",
                 "--max-batch-size", "8", "--max-latency-ms", "5", "--max-queue", "64",
                 "--overload-max-queue", "16"],
                env,
                args.log_dir / "models-idle.log",
                args.start_timeout,
            )
            say("idle reference server (tiny model only)")
            idle = idle_server(args.work_dir / "repository-tiny", args.log_dir, env, args.start_timeout)
        models[kind] = measure_model(kind, args, p, env, idle, peak["peak_gflops"])
    return {
        "peak": peak,
        "idle_server": idle,
        "models": models,
        "wall_s": round(time.monotonic() - started, 1),
    }
