"""Orchestrates one benchmark run: model directories, child processes, load, table and JSON.

    .venv/bin/python -m bench --model all   # the full run: study + every model (~30 min on the quiet CPU)
    .venv/bin/python -m bench            # study (sections 1-5) + section 6, general recognition (~11 min)
    .venv/bin/python -m bench --quick    # shorter levels, concurrency 1/4/16
    .venv/bin/python -m bench --model face-enhancement --per-model-only   # one model's section 6
    .venv/bin/python -m bench --profile gpu --model all --device cuda     # bench/gpu.py
    .venv/bin/python -m bench --help

This process generates the load (asyncio + httpx, loopback only, bounded in requests and seconds) and
must not import KServe or the server's model code; everything model-side runs in child processes that
inherit the same torch thread settings (OMP_NUM_THREADS / MKL_NUM_THREADS = --threads).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen, permodel, report
from bench.common import (
    Request,
    latency_summary,
    parse_v2_binary_response,
    ratio,
    v1_request,
    v2_binary_request,
    v2_json_request,
)
from bench.harness import child_env, close_run
from bench.harness import run_child_json as _run_child_json
from bench.harness import say as _say
from devtools.images import sample_jpeg
from devtools.procs import Child, free_port, start

BENCH_DIR = Path(__file__).resolve().parent
#: the models the server study (sections 1-5) can run on
STUDY_MODELS = ("general-recognition", "image-classification", "tiny")
SERVER_MODELS = ("model-batch", "model-nobatch", "model-overload", "tiny", "tiny-batch")

PROFILES: dict[str, dict[str, Any]] = {
    # seconds per concurrency level, levels, raw ceiling seconds per batch size, baseline levels,
    # sequential requests per protocol (overhead), overload seconds, unloaded-reference seconds
    "full": {
        "duration": 20.0,
        "levels": [1, 4, 16, 64],
        "raw_seconds": 8.0,
        "raw_min_iterations": 3,
        "baseline_levels": [1, 4, 16],
        "overhead_requests": 2000,
        "overload_seconds": 30.0,
        "unloaded_seconds": 10.0,
        "max_requests": 5000,
        "model_levels": [1, 4, 16],
        "model_max_raw_batch": 64,
        "model_warm": 64,
        "peak_size": 2048,
        "peak_repeats": 10,
    },
    "quick": {
        "duration": 5.0,
        "levels": [1, 4, 16],
        "raw_seconds": 2.0,
        "raw_min_iterations": 1,
        "baseline_levels": [1, 16],
        "overhead_requests": 300,
        "overload_seconds": 8.0,
        "unloaded_seconds": 3.0,
        "max_requests": 2000,
        "model_levels": [1, 4, 16],
        "model_max_raw_batch": 64,
        "model_warm": 64,
        "peak_size": 2048,
        "peak_repeats": 5,
    },
    # the test suite's smoke run: tiny numbers, only shows that every section runs and reports
    "smoke": {
        "duration": 0.5,
        "levels": [1, 4],
        "raw_seconds": 0.1,
        "raw_min_iterations": 1,
        "baseline_levels": [4],
        "overhead_requests": 30,
        "overload_seconds": 1.0,
        "unloaded_seconds": 0.5,
        "max_requests": 200,
        "model_levels": [1],
        "model_max_raw_batch": 1,
        "model_warm": 1,
        "peak_size": 256,
        "peak_repeats": 2,
        # plumbing only: the face model detects, super-resolves and encodes but enhances no face (one
        # 512 px GPEN pass costs seconds on a CPU; tests/unit/models cover GPEN)
        "model_options": {"face-enhancement": {"max_faces_per_image": 0}},
        "model_parameters": {"face-enhancement": {"require_face": False}},
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench [run]", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a ~2 minute run (shorter, concurrency 1/4/16)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for the test suite")
    parser.add_argument(
        "--profile",
        choices=["full", "quick", "smoke", "gpu"],
        help="full (default), quick (= --quick), smoke (= --smoke), or gpu: in-process ceilings of every "
        "model at batch 1..64 in fp32 and the reduced precision on --device (bench/gpu.py)",
    )
    parser.add_argument(
        "--model",
        choices=[*STUDY_MODELS, "face-enhancement", "visual-entailment", "all"],
        default="general-recognition",
        help="the model(s) of the run (default: general recognition, ResNeSt-101). The server study "
        "(sections 1-5: baseline, overhead, overload) runs for general-recognition (also with all), "
        "image-classification and tiny; the per-model sections for each selected model (all: the four)",
    )
    parser.add_argument(
        "--per-model-only", action="store_true", help="skip the server study; only the per-model sections"
    )
    parser.add_argument("--device", default="cuda", help="--profile gpu: the device (cuda, cuda:N, cpu)")
    parser.add_argument(
        "--gpu-max-batch", type=int, default=64, help="--profile gpu: the largest batch size (1, 2, 4 ... this)"
    )
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-latency-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=64, help="queue bound of the throughput sections")
    parser.add_argument(
        "--overload-max-queue",
        type=int,
        default=None,
        help="queue bound of the overload section (default: 2 x max batch size)",
    )
    parser.add_argument(
        "--overload-max-queue-delay-ms",
        type=float,
        default=600.0,
        help="the overload model's bound on the estimated queue wait (server setting max_queue_delay_ms; 0: off)",
    )
    parser.add_argument("--overload-factor", type=float, default=3.0, help="offered load / capacity")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads of every contender (OMP/MKL_NUM_THREADS)",
    )
    parser.add_argument("--levels", help="comma-separated concurrency levels (overrides the profile)")
    parser.add_argument("--baseline-levels", help="comma-separated concurrency levels of the baseline")
    parser.add_argument(
        "--duration", type=float, help="seconds per concurrency level (overrides the profile)"
    )
    parser.add_argument("--image-size", type=int, default=64, help="side of the overhead section's image")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / "results" / "work")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--start-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    args.profile = args.profile or ("smoke" if args.smoke else "quick" if args.quick else "full")
    args.overload_max_queue = args.overload_max_queue or 2 * args.max_batch_size
    return args


def _child_env(args: argparse.Namespace) -> dict[str, str]:
    return child_env(args.threads, args.work_dir)


async def _closed(url: str, requests: list[Request], concurrency: int, p: dict[str, Any]) -> dict[str, Any]:
    result = await loadgen.closed_loop(url, requests, concurrency, p["duration"], p["max_requests"])
    return {"concurrency": concurrency, **result.summary()}


async def _warm(url: str, requests: list[Request], concurrency: int) -> None:
    """One round at `concurrency` so the first measured batch does not pay first-shape costs."""
    result = await loadgen.closed_loop(url, requests, concurrency, 600.0, concurrency)
    bad = [o for o in result.outcomes if o.status != 200]
    if bad:
        raise RuntimeError(f"warm-up against {url}{requests[0][0]} failed: {bad[:3]}")


def _sequential(url: str, request: Request, count: int) -> dict[str, Any]:
    """`count` back-to-back requests on one keep-alive connection (sync httpx client): latency floor."""
    loadgen.check_loopback(url)
    path, body, headers = request
    times, errors = [], 0
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for i in range(count + min(50, count)):
            started = time.perf_counter()
            response = client.post(path, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                errors += 1
            elif i >= min(50, count):  # the first ones warm the connection and caches
                times.append(elapsed)
    return {"requests": count, "errors": errors, **latency_summary(times)}


def _check_binary_answer(url: str, request: Request) -> None:
    path, body, headers = request
    response = httpx.post(url + path, content=body, headers=headers, timeout=30, trust_env=False)
    response.raise_for_status()
    outputs = parse_v2_binary_response(
        response.content, int(response.headers["inference-header-content-length"])
    )
    if not outputs.get("labels") or len(outputs["labels"]) != len(outputs["scores"]):
        raise RuntimeError(f"unexpected binary answer from {url}{path}: {outputs}")


async def _overload(
    server: Child, requests: list[Request], capacity_rps: float, args: argparse.Namespace, p: dict[str, Any]
) -> dict[str, Any]:
    url = server.url
    unloaded = await loadgen.closed_loop(url, requests, 1, p["unloaded_seconds"], p["max_requests"])
    offered = args.overload_factor * capacity_rps
    max_outstanding = min(512, max(32, int(offered * 10)))
    stop = asyncio.Event()
    probe = asyncio.create_task(loadgen.probe_health(url, stop))
    loaded = await loadgen.open_loop(
        url,
        requests,
        offered,
        p["overload_seconds"],
        max_requests=int(offered * p["overload_seconds"]) + 1,
        max_outstanding=max_outstanding,
    )
    stop.set()
    health = await probe
    after = await loadgen.closed_loop(url, requests, 1, 600.0, 1)
    try:
        ready = httpx.get(url + "/v2/health/ready", timeout=5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        ready = False
    summary = loaded.summary()
    statuses = {int(k): v for k, v in summary["statuses"].items()}
    bad_5xx = sum(v for k, v in statuses.items() if k >= 500 and k not in (503, 504))
    answered = summary["requests"]
    return {
        "model": "model-overload",
        "max_queue": args.overload_max_queue,
        "max_queue_delay_ms": args.overload_max_queue_delay_ms,
        "capacity_rps": round(capacity_rps, 3),
        "offered_rps": round(offered, 3),
        "sent_rps": round(answered / p["overload_seconds"], 3) if p["overload_seconds"] else None,
        "seconds": p["overload_seconds"],
        "unloaded": {"concurrency": 1, **unloaded.summary()},
        "overload": summary,
        "share_503": round(statuses.get(503, 0) / answered, 4) if answered else None,
        "share_504": round(statuses.get(504, 0) / answered, 4) if answered else None,
        "other_5xx": bad_5xx,
        "transport_errors": sum(summary["transport_errors"].values()),
        "accepted_p99_ms": summary["p99_ms"],
        "unloaded_p99_ms": unloaded.summary()["p99_ms"],
        "p99_ratio": ratio(summary["p99_ms"], unloaded.summary()["p99_ms"]),
        "health": health,
        "healthy_after": server.alive() and ready and after.summary()["ok"] == 1,
    }


async def _measure(
    args: argparse.Namespace, p: dict[str, Any], ours: Child, baseline: Child, results: dict[str, Any]
) -> None:
    levels = p["levels"]
    images = [sample_jpeg(seed) for seed in range(8)]

    # 2. our server, batching on and off, same payload as the baseline (v1 JSON, base64 image)
    section: dict[str, Any] = {"protocol": "v1 JSON (base64 image)", "levels": levels, "modes": {}}
    for mode, model in (("batching_on", "model-batch"), ("batching_off", "model-nobatch")):
        requests = [v1_request(model, image) for image in images]
        await _warm(ours.url, requests, args.max_batch_size if mode == "batching_on" else 1)
        rows = []
        for level in levels:
            _say(f"server {mode}: concurrency {level}")
            rows.append(await _closed(ours.url, requests, level, p))
        section["modes"][mode] = {
            "model": model,
            "max_batch_size": args.max_batch_size if mode == "batching_on" else 1,
            "max_latency_ms": args.max_latency_ms,
            "rows": rows,
        }
    results["server"] = section

    # 3. the FastAPI + pipeline baseline, same client, same payload
    requests = [v1_request(args.model, image) for image in images]
    await _warm(baseline.url, requests, 1)
    rows = []
    for level in p["baseline_levels"]:
        _say(f"baseline: concurrency {level}")
        rows.append(await _closed(baseline.url, requests, level, p))
    info = httpx.get(baseline.url + "/info", timeout=10, trust_env=False).json()
    results["baseline"] = {
        "app": "bench/baseline_fastapi.py",
        "recipe": "sync def endpoint in FastAPI's "
        "thread pool, pipeline built once at start-up, one pipeline call per image",
        **info,
        "levels": p["baseline_levels"],
        "rows": rows,
    }

    # 4. framework overhead: near-zero model, sequential requests; echo server = bare HTTP floor
    small = sample_jpeg(0, (args.image_size, args.image_size))
    overhead: dict[str, Any] = {
        "image_bytes": len(small),
        "image_size": args.image_size,
        "requests_per_protocol": p["overhead_requests"],
        "server": {},
    }
    _check_binary_answer(ours.url, v2_binary_request("tiny", small))
    for name, request in (
        ("v2_binary", v2_binary_request("tiny", small)),
        ("v2_json", v2_json_request("tiny", small)),
        ("v1", v1_request("tiny", small)),
        ("v2_binary_batching_on", v2_binary_request("tiny-batch", small)),
    ):
        _say(f"overhead: {name}")
        overhead["server"][name] = _sequential(ours.url, request, p["overhead_requests"])
    echo = start(
        "echo",
        [sys.executable, "-m", "bench.echo_server", "--port", str(port := free_port())],
        port,
        args.log_dir,
        _child_env(args),
    )
    try:
        echo.wait_ready(["/"], 60)
        overhead["echo_v2_binary"] = _sequential(
            echo.url, v2_binary_request("tiny", small), p["overhead_requests"]
        )
    finally:
        echo.stop()
    results["overhead"] = overhead

    # 5. overload: offered load = factor x the best throughput of batching on
    capacity = max(row["throughput_rps"] for row in results["server"]["modes"]["batching_on"]["rows"])
    overload_requests = [v1_request("model-overload", image) for image in images]
    await _warm(ours.url, overload_requests, args.max_batch_size)
    _say(f"overload: {args.overload_factor} x {capacity:.2f} req/s for {p['overload_seconds']} s")
    results["overload"] = await _overload(ours, overload_requests, capacity, args, p)


def _derive(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Overhead differences and the five targets (met / missed / not measured)."""
    overhead = results["overhead"]
    path = {row["model"]: row for row in results["raw"].get("path", [])}
    echo_p50 = overhead["echo_v2_binary"]["p50_ms"]
    added = {}
    for name, row in overhead["server"].items():
        in_process = path.get("tiny-batch" if name.endswith("batching_on") else "tiny", {}).get("p50_ms")
        added[name] = {
            "server_p50_ms": row["p50_ms"],
            "minus_in_process_path_ms": None
            if in_process is None or row["p50_ms"] is None
            else round(row["p50_ms"] - in_process, 3),
            "minus_echo_ms": None if row["p50_ms"] is None else round(row["p50_ms"] - echo_p50, 3),
        }
    overhead["added_p50_ms"] = added
    overhead["in_process_path"] = list(path.values())

    def row_at(rows: list[dict[str, Any]], level: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["concurrency"] == level), None)

    on = results["server"]["modes"]["batching_on"]["rows"]
    off = results["server"]["modes"]["batching_off"]["rows"]
    raw_rows = {r["batch_size"]: r for r in results["raw"]["ceiling"]["batches"]}
    ceiling = raw_rows.get(args.max_batch_size) or raw_rows[max(raw_rows)]
    best_on = max(r["throughput_rps"] for r in on)
    level = 16 if row_at(on, 16) else max(r["concurrency"] for r in on)
    on16, off16 = row_at(on, level), row_at(off, level)
    base16 = row_at(results["baseline"]["rows"], level) or results["baseline"]["rows"][-1]
    overload = results["overload"]
    binary_added = added["v2_binary"]["minus_in_process_path_ms"]
    targets = {
        "saturation_vs_raw": {
            "goal": ">= 0.90 of raw in-process items/s at the same batch size",
            "value": ratio(best_on, ceiling["items_per_s"]),
            "detail": f"server best {best_on} req/s vs raw {ceiling['items_per_s']} items/s at batch "
            f"{ceiling['batch_size']}",
        },
        "batching_speedup": {
            "goal": f">= 1.5x throughput on/off at concurrency {level}, p99 on/off <= 2x",
            "value": ratio(on16["throughput_rps"], off16["throughput_rps"]) if on16 and off16 else None,
            "p99_ratio": ratio(on16["p99_ms"], off16["p99_ms"]) if on16 and off16 else None,
        },
        "vs_baseline": {
            "goal": f">= 2x the FastAPI+pipeline throughput at concurrency {level}",
            "value": ratio(on16["throughput_rps"], base16["throughput_rps"]) if on16 else None,
            "baseline_concurrency": base16["concurrency"],
        },
        "framework_overhead": {
            "goal": "v2 binary p50 added latency <= 2 ms (server p50 - in-process predictor path p50)",
            "value": binary_added,
        },
        "overload": {
            "goal": "accepted p99 <= 3x unloaded p99; no 5xx but 503/504; healthy throughout",
            "value": overload["p99_ratio"],
            "other_5xx": overload["other_5xx"],
            "healthy": overload["healthy_after"] and overload["health"]["failures"] == 0,
        },
    }
    checks = {
        "saturation_vs_raw": lambda t: t["value"] is not None and t["value"] >= 0.9,
        "batching_speedup": lambda t: (
            t["value"] is not None and t["value"] >= 1.5 and (t["p99_ratio"] or 0) <= 2
        ),
        "vs_baseline": lambda t: t["value"] is not None and t["value"] >= 2,
        "framework_overhead": lambda t: t["value"] is not None and t["value"] <= 2,
        "overload": lambda t: (
            t["value"] is not None and t["value"] <= 3 and t["other_5xx"] == 0 and t["healthy"]
        ),
    }
    for name, target in targets.items():
        target["met"] = bool(checks[name](target))
    results["targets"] = targets


def _server_study(args: argparse.Namespace, p: dict[str, Any], env: dict[str, str],
                  results: dict[str, Any]) -> None:
    """Sections 1-5 on `args.study_model`: ceiling, server on/off, baseline, overhead, overload, targets."""
    _say(f"model directories ({args.study_model}) under {args.work_dir}")
    written = _run_child_json(
        [
            sys.executable,
            "-m",
            "bench.models",
            str(args.work_dir),
            "--kind",
            args.study_model,
            "--max-batch-size",
            str(args.max_batch_size),
            "--max-latency-ms",
            str(args.max_latency_ms),
            "--max-queue",
            str(args.max_queue),
            "--overload-max-queue",
            str(args.overload_max_queue),
            "--overload-max-queue-delay-ms",
            str(args.overload_max_queue_delay_ms),
        ],
        env,
        args.log_dir / "models.log",
        args.start_timeout,
    )
    repository, source = Path(written["repository"]), Path(written["source"])

    _say("starting our server and the baseline")
    port, grpc_port, base_port = free_port(), free_port(), free_port()
    ours = start(
        "server",
        [
            sys.executable,
            "-m",
            "predictors",
            "serve",
            "--model-repository",
            str(repository),
            "--http-port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--enable-grpc",
            "false",
            "--log-level",
            "WARNING",
        ],
        port,
        args.log_dir,
        env,
    )
    backend = "modelscope" if args.study_model == "general-recognition" else "torch"
    baseline = start(
        "baseline",
        [
            sys.executable,
            "-m",
            "bench.baseline_fastapi",
            "--model-dir",
            str(source),
            "--port",
            str(base_port),
            "--backend",
            backend,
        ],
        base_port,
        args.log_dir,
        env,
    )
    in_process_command = [
        sys.executable,
        "-m",
        "bench.inprocess",
        "--raw-dir",
        str(repository / "model-batch"),
        "--batch-sizes",
        ",".join(str(b) for b in permodel.batch_sizes(args.max_batch_size)),
        "--seconds",
        str(p["raw_seconds"]),
        "--min-iterations",
        str(p["raw_min_iterations"]),
        "--path-dirs",
        f"{repository / 'tiny'},{repository / 'tiny-batch'}",
        "--path-count",
        str(p["overhead_requests"]),
        "--image-size",
        str(args.image_size),
    ]
    pool = ThreadPoolExecutor(1)
    early = None
    if args.profile == "smoke":  # the smoke run only checks plumbing: overlap it with the start-up
        early = pool.submit(
            _run_child_json, in_process_command, env, args.log_dir / "inprocess.log", args.start_timeout
        )
    try:
        results["startup_s"] = {
            "server": round(
                ours.wait_ready([f"/v2/models/{m}/ready" for m in SERVER_MODELS], args.start_timeout), 2
            ),
            "baseline": round(baseline.wait_ready(["/v2/health/live"], args.start_timeout), 2),
        }
        # 1. the ceiling (and the in-process path of the overhead model) while both servers sit idle
        _say("in-process ceiling")
        raw = (
            early.result()
            if early is not None
            else _run_child_json(in_process_command, env, args.log_dir / "inprocess.log", args.start_timeout)
        )
        results["environment"] = raw["environment"]
        results["raw"] = {"ceiling": raw["raw"], "path": raw["path"]}
        asyncio.run(_measure(args, p, ours, baseline, results))
        results["server_alive_at_end"] = ours.alive()
    finally:
        results["server_exit_code"] = ours.stop()
        baseline.stop()
        pool.shutdown(wait=True)
    _derive(results, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. a test's timeout) unwinds through the `finally` that stops our child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # the GPU profile has its own sizes (bench/gpu.py); the quick numbers only fill the settings record
    p = dict(PROFILES["quick" if args.profile == "gpu" else args.profile])
    if args.levels:
        p["levels"] = [int(x) for x in args.levels.split(",") if x]
    if args.baseline_levels:
        p["baseline_levels"] = [int(x) for x in args.baseline_levels.split(",") if x]
    if args.duration is not None:
        p["duration"] = args.duration
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.log_dir = args.work_dir / "logs" / stamp
    args.log_dir.mkdir(parents=True, exist_ok=True)
    env = _child_env(args)
    began = time.monotonic()
    results: dict[str, Any] = {
        "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "profile": args.profile,
        "model": args.model,
        "settings": {
            "max_batch_size": args.max_batch_size,
            "max_latency_ms": args.max_latency_ms,
            "max_queue": args.max_queue,
            "overload_max_queue": args.overload_max_queue,
            "overload_factor": args.overload_factor,
            "threads": args.threads,
            **p,
        },
        "load_average_at_start": list(os.getloadavg()),
    }

    args.study_model = "general-recognition" if args.model == "all" else args.model
    if args.profile == "gpu":
        from bench import gpu

        results["gpu"] = gpu.measure(gpu_kinds(args.model), args, env)
        results["environment"] = results["gpu"]["environment"]
    else:
        if args.study_model in STUDY_MODELS and not args.per_model_only:
            _server_study(args, p, env, results)
        kinds = list(permodel.REAL_MODELS) if args.model == "all" else [args.model]
        results["per_model"] = permodel.measure_all(kinds, args, p, env)
        first = next(iter(results["per_model"]["models"].values()))
        results.setdefault("environment", first["environment"])
    out = args.out_dir / f"{stamp}.json"
    close_run(results, began, args.log_dir, out)
    print(report.render(results))
    print(f"\nJSON: {out}")
    return 0


def gpu_kinds(model: str) -> list[str]:
    return list(permodel.REAL_MODELS) if model == "all" else [model]


if __name__ == "__main__":
    sys.exit(main())
