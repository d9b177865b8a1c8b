"""The server on the C library's malloc against the server on jemalloc (`--memory-allocator`), side by side.

    .venv/bin/python -m bench allocator                  # general recognition (ResNeSt-101), ~4.5 min
    .venv/bin/python -m bench allocator --quick          # the same, shorter (~2 min)
    .venv/bin/python -m bench allocator --smoke --model tiny   # seconds, plumbing only (the tests)

Two server processes serve the same model with the server's batching defaults, one started with
``--memory-allocator system`` and one with ``--memory-allocator jemalloc``. Closed loops at c = 16 (the
jobs benchmark's sync load) alternate between them, segment by segment (system, jemalloc, system, ...), so
a machine that drifts during the run moves both alike; only one server has work at a time. Per segment:
items/s, the loaded server's minor page faults per second and the kernel's share of its CPU time
(``/proc/<pid>/stat``), and its resident memory at the end. After the last segment both servers stay idle
and their resident memory is read again after 30 and 60 s (jemalloc returns freed pages after a quiet
half minute, `predictors.allocator.JEMALLOC_CONF`). Each server's allocator is read from its own
``/proc/<pid>/maps``, not assumed. Results go to ``bench/results/allocator-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import Request
from bench.harness import chosen_profile, open_run, parse_section_args, publish, say, section_parser
from bench.latency import requests_for, serve, write_variants
from bench.models import MODEL_KINDS
from bench.report import _f, _table, section_header
from devtools.procs import Child, rss_mb

CONCURRENCY = 16
ALLOCATORS = ("system", "jemalloc")
IDLE_READINGS_S = (30.0, 60.0)
TICKS = os.sysconf("SC_CLK_TCK")

PROFILES: dict[str, dict[str, Any]] = {
    "full": {"model": "general-recognition", "warm_seconds": 5.0, "segment_seconds": 15.0, "segments": 6,
             "idle_readings": IDLE_READINGS_S},
    "quick": {"model": "general-recognition", "warm_seconds": 3.0, "segment_seconds": 8.0, "segments": 3,
              "idle_readings": (30.0,)},
    "smoke": {"model": "tiny", "warm_seconds": 0.3, "segment_seconds": 0.5, "segments": 2, "idle_readings": (0.5,)},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_section_args(section_parser("allocator", __doc__ or "", "shorter segments (~2 min)", MODEL_KINDS),
                              argv)


def process_counters(pid: int) -> dict[str, float]:
    """Minor page faults and user / system CPU seconds of process `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"minflt": float(fields[7]), "user_s": int(fields[11]) / TICKS, "system_s": int(fields[12]) / TICKS}


async def segment(server: Child, requests: list[Request], seconds: float) -> dict[str, Any]:
    pid = server.process.pid
    before, started = process_counters(pid), time.monotonic()
    result = await loadgen.closed_loop(server.url, requests, CONCURRENCY, seconds, 1_000_000)
    after, elapsed = process_counters(pid), time.monotonic() - started
    cpu = (after["user_s"] - before["user_s"]) + (after["system_s"] - before["system_s"])
    return {**result.summary(), "page_faults_per_s": round((after["minflt"] - before["minflt"]) / elapsed),
            "kernel_share_of_cpu": round((after["system_s"] - before["system_s"]) / cpu, 3) if cpu else None,
            "cpu_cores": round(cpu / elapsed, 2), "resident_mb": rss_mb(pid)["VmRSS"]}


def summary(segments: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [s["throughput_rps"] for s in segments]
    mean = statistics.fmean(rates)
    return {"items_per_s_mean": round(mean, 3), "items_per_s_min": min(rates), "items_per_s_max": max(rates),
            "spread": round((max(rates) - min(rates)) / mean, 3) if mean else None,
            "page_faults_per_s_mean": round(statistics.fmean(s["page_faults_per_s"] for s in segments)),
            "kernel_share_of_cpu_mean": round(statistics.fmean(s["kernel_share_of_cpu"] or 0.0 for s in segments), 3),
            "resident_mb_max": max(s["resident_mb"] for s in segments)}


def measure(servers: dict[str, Child], args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    requests = requests_for(args.model, args.model)

    async def run() -> dict[str, Any]:
        gc.collect()
        gc.freeze()  # the load generator's own full collections would land in what it measures
        for name, server in servers.items():
            say(f"warm-up of the {name} server ({p['warm_seconds']} s)")
            await loadgen.closed_loop(server.url, requests, CONCURRENCY, p["warm_seconds"], 1_000_000)
        segments: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for number in range(1, p["segments"] + 1):
            for name, server in servers.items():
                say(f"segment {number} of {p['segments']}: {name}, c = {CONCURRENCY} for {p['segment_seconds']} s")
                segments[name].append(await segment(server, requests, p["segment_seconds"]))
        return segments

    segments = asyncio.run(run())
    idle: dict[str, dict[str, float]] = {name: {} for name in servers}
    waited = 0.0
    for reading in p["idle_readings"]:
        time.sleep(reading - waited)
        waited = reading
        for name, server in servers.items():
            idle[name][f"{reading:g}"] = rss_mb(server.process.pid)["VmRSS"]
    out: dict[str, Any] = {"segments": segments, "idle_resident_mb": idle,
                           "summary": {name: summary(runs) for name, runs in segments.items()}}
    pairs = [jemalloc["throughput_rps"] / system["throughput_rps"]
             for system, jemalloc in zip(segments["system"], segments["jemalloc"], strict=True)
             if system["throughput_rps"]]
    out["jemalloc_over_system"] = {"pairs": [round(x, 3) for x in pairs],
                                   "mean": round(statistics.fmean(pairs), 3) if pairs else None}
    return out


def render(r: dict[str, Any]) -> str:
    parts = section_header("memory allocators", r, f"allocators found: {r['memory_allocators']}")
    rows = []
    for number in range(len(r["segments"]["system"])):
        for name in ALLOCATORS:
            s = r["segments"][name][number]
            rows.append([number + 1, name, s["ok"], s["throughput_rps"], s["page_faults_per_s"],
                         _f(s["kernel_share_of_cpu"], 3), s["cpu_cores"], s["resident_mb"]])
    parts.append("\n" + _table(["segment", "allocator", "answers", "items/s", "page faults/s",
                                "kernel share of CPU", "CPU cores", "resident MB"], rows))
    rows = [[name, s["items_per_s_mean"], f"{s['items_per_s_min']}-{s['items_per_s_max']}", _f(s["spread"], 3),
             s["page_faults_per_s_mean"], _f(s["kernel_share_of_cpu_mean"], 3), s["resident_mb_max"],
             ", ".join(f"{k} s: {v}" for k, v in r["idle_resident_mb"][name].items())]
            for name, s in r["summary"].items()]
    parts.append("\n" + _table(["allocator", "items/s mean", "range", "spread", "page faults/s",
                                "kernel share", "resident MB max", "resident MB when idle"], rows))
    ratio = r["jemalloc_over_system"]
    parts.append(f"\njemalloc / system, segment by segment: {ratio['pairs']}  mean {ratio['mean']}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = chosen_profile(args, PROFILES)
    stamp, env, began, results = open_run(args, "allocator", argv)
    results["settings"] = {**p, "concurrency": CONCURRENCY}
    repository = write_variants(args, env, {args.model: {}})
    servers: dict[str, Child] = {}
    try:
        for name in ALLOCATORS:
            say(f"server on {args.model} with --memory-allocator {name}")
            servers[name] = serve(repository, [args.model], args, env, name, ["--memory-allocator", name])
        results["memory_allocators"] = {name: server.memory_allocator() for name, server in servers.items()}
        results.update(measure(servers, args, p))
    finally:
        results["server_exit_codes"] = {name: server.stop() for name, server in servers.items()}
    return publish(results, began, args.log_dir, args.out_dir / f"allocator-{stamp}.json", render)


if __name__ == "__main__":
    sys.exit(main())
