"""Latency targets against static batching knobs, on a real server.

    .venv/bin/python -m bench latency             # general recognition (ResNeSt-101), ~15 min on a quiet CPU
    .venv/bin/python -m bench latency --quick     # image classification (MobileNetV3-Small demo), ~3 min
    .venv/bin/python -m bench latency --smoke --model tiny          # seconds, plumbing only (the tests)
    .venv/bin/python -m bench latency --latency-targets 800,1500    # targets of your own (ms)

Contenders: models of the same weights, each with its own predictor.json:

- static: the server's defaults (`max_batch_size`, `max_latency_ms` of predictors/settings.py) and a small
  sweep of max_batch_size x max_latency_ms (`sweep` of the profile);
- target T: ``latency_target_ms`` = T with ``max_queue_delay_ms`` = T (refusal on) and ``max_batch_size``
  = the largest of the sweep (the hard upper bound; the batcher chooses below it).

Scenarios, closed loop (a client sends its next request when the previous one answered; one told 503
waits T/4 first, as a client backing off would):

1. c = 4 and c = 16 for `duration` seconds, every contender (server 1 serves every static one). The best
   static setting is the one with the highest throughput at c = 16. Unless given, two targets: the best
   static setting's own p99 at c = 16 (same latency budget: can the target match its throughput?) and
   half of it (a budget no static setting of the sweep keeps at c = 16: work has to be refused), each
   rounded up to 10 ms.
2. the load step c = 2 -> 16 -> 2, `step_seconds` each without draining in between, for the default,
   the best static setting and each target, sampling the chosen batch size
   (``predictors_batch_size_target_items``) every 0.25 s;
3. open loop at 0.7 x capacity (the best static req/s at c = 16): an offered load below capacity.

Server 2 serves the target contenders once T is known.

Targets: p99 <= T whenever the offered load is below capacity -- the open-loop row, and each
closed-loop row or step phase whose c requests in flight the best static setting at that c serves within
T on average (c / its req/s <= T, Little's law; above that no scheduler keeps the p99 under T without
refusing work); throughput >= 0.95 x the best static setting's in each closed-loop scenario. The target
covers a request's time at the server from its arrival to its finished answer; the latency measured here
adds encoding and sending the answer, the loopback connection and the client. Results go to
``bench/results/latency-<time>.json``. This process imports neither KServe nor any model code: the model
directories are written and the servers run in child processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen
from bench.common import Request, model_instance, ratio, v1_instance_request
from bench.harness import chosen_profile, open_run, parse_section_args, publish, run_child_json, say, section_parser
from bench.models import MODEL_KINDS
from bench.report import _f, _table, section_header
from devtools.procs import Child, free_port, start
from predictors.settings import default

LEVELS = (4, 16)
STEP = (2, 16, 2)
OPEN_LOOP_LOAD = 0.7
THROUGHPUT_TARGET = 0.95
#: the payload of each model kind (the tiny classifier takes the classification payload)
PAYLOAD = {"tiny": "image-classification"}

PROFILES: dict[str, dict[str, Any]] = {
    "full": {"model": "general-recognition", "duration": 20.0, "step_seconds": 20.0, "open_seconds": 20.0,
             "warm_seconds": 5.0, "max_requests": 20_000,
             "sweep": [(1, 0.0), (4, 2.0), (4, 20.0), (8, 20.0), (16, 2.0), (16, 20.0), (16, 50.0)]},
    "quick": {"model": "image-classification", "duration": 5.0, "step_seconds": 5.0, "open_seconds": 5.0,
              "warm_seconds": 2.0, "max_requests": 20_000, "sweep": [(1, 0.0), (4, 2.0), (16, 10.0)]},
    "smoke": {"model": "tiny", "duration": 0.5, "step_seconds": 0.5, "open_seconds": 0.5,
              "warm_seconds": 0.3, "max_requests": 2_000, "sweep": [(1, 0.0)]},
}

GAUGE = re.compile(r'^predictors_batch_size_target_items\{model="(?P<model>[^"]+)"\} (?P<value>\S+)$', re.M)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = section_parser("latency", __doc__ or "", "a ~3 minute run on the image classifier", MODEL_KINDS)
    parser.add_argument("--latency-targets", help="comma-separated targets in ms (default: derived, see above)")
    parser.add_argument("--duration", type=float, help="seconds per closed-loop level (overrides the profile)")
    return parse_section_args(parser, argv)


# ---- contenders and servers ---------------------------------------------------------------------


def static_name(batch: int, latency_ms: float) -> str:
    return f"static-b{batch}-l{latency_ms:g}"


def target_name(target_ms: float) -> str:
    return f"target-{target_ms:g}ms"


def write_variants(args: argparse.Namespace, env: dict[str, str], variants: dict[str, dict[str, Any]]) -> Path:
    written = run_child_json(
        [sys.executable, "-m", "bench.models", str(args.work_dir), "--kind", args.model,
         "--variants", json.dumps(variants)],
        env, args.log_dir / "models.log", args.start_timeout,
    )
    return Path(written["repository"])


def serve(repository: Path, models: list[str], args: argparse.Namespace, env: dict[str, str], tag: str,
          extra: Sequence[str] = ()) -> Child:
    """The server on `models` of `repository` (access log off), ready; `extra`: more serve flags."""
    port = free_port()
    server = start(
        f"server-{tag}",
        [sys.executable, "-m", "predictors", "serve", "--model-repository", str(repository),
         "--models", ",".join(models), "--http-port", str(port), "--grpc-port", str(free_port()),
         "--enable-grpc", "false", "--log-level", "WARNING", "--no-access-log", *extra],
        port, args.log_dir, env,
    )
    try:
        server.wait_ready([f"/v2/models/{model}/ready" for model in models], args.start_timeout)
    except BaseException:
        server.stop()  # a server that never got ready is not left running
        raise
    return server


def requests_for(model: str, kind: str) -> list[Request]:
    payload = PAYLOAD.get(kind, kind)
    return [v1_instance_request(model, model_instance(payload, seed)) for seed in range(8)]


# ---- scenarios ----------------------------------------------------------------------------------


async def warm(url: str, requests: list[Request], seconds: float, pause: float) -> None:
    """Load at c = 4 for a while: first-shape costs paid, and a target's cost estimate fed."""
    result = await loadgen.closed_loop(url, requests, 4, seconds, 10_000, pause_after_busy=pause)
    if not any(o.status == 200 for o in result.outcomes):
        raise RuntimeError(f"warm-up against {url}{requests[0][0]} failed: {result.outcomes[:3]}")


async def closed_levels(url: str, requests: list[Request], p: dict[str, Any], pause: float) -> list[dict[str, Any]]:
    rows = []
    for level in LEVELS:
        result = await loadgen.closed_loop(url, requests, level, p["duration"], p["max_requests"],
                                           pause_after_busy=pause)
        rows.append({"concurrency": level, **result.summary()})
    return rows


async def sample_gauge(url: str, model: str, stop: asyncio.Event, origin: float) -> list[tuple[float, float]]:
    """(seconds since `origin`, the chosen batch size) every 0.25 s until `stop` is set."""
    samples: list[tuple[float, float]] = []
    async with loadgen.make_client(url, 1, 5.0) as client:
        while not stop.is_set():
            try:
                text = (await client.get("/metrics")).text
            except httpx.HTTPError:
                text = ""
            for match in GAUGE.finditer(text):
                if match["model"] == model:
                    samples.append((round(time.perf_counter() - origin, 3), float(match["value"])))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)
    return samples


async def load_step(url: str, model: str, requests: list[Request], seconds: float, pause: float) -> dict[str, Any]:
    stop = asyncio.Event()
    origin = time.perf_counter()
    gauge = asyncio.create_task(sample_gauge(url, model, stop, origin))
    result = await loadgen.stepped_loop(url, requests, [(c, seconds) for c in STEP], pause_after_busy=pause)
    stop.set()
    samples = await gauge
    phases = []
    for index, concurrency in enumerate(STEP):
        start, end = index * seconds, (index + 1) * seconds
        sizes = [value for at, value in samples if start <= at < end]
        phases.append({"concurrency": concurrency, **result.window(start, end).summary(),
                       "chosen_batch_size_mean": round(sum(sizes) / len(sizes), 2) if sizes else None})
    return {"seconds_per_phase": seconds, "overall": result.window(0, len(STEP) * seconds).summary(),
            "phases": phases, "chosen_batch_size": samples}


async def open_loop(url: str, requests: list[Request], rate: float, seconds: float) -> dict[str, Any]:
    result = await loadgen.open_loop(url, requests, rate, seconds, max_requests=int(rate * seconds) + 1,
                                     max_outstanding=min(512, max(32, int(rate * 10))))
    return {"offered_rps": round(rate, 3), **result.summary()}


def measure(url: str, model: str, args: argparse.Namespace, p: dict[str, Any], pause: float, *,
            levels: bool, open_rate: float | None) -> dict[str, Any]:
    """After a warm-up: with `levels`, the closed loop at each level; with `open_rate`, the load step and
    the open loop at that rate."""
    requests = requests_for(model, args.model)

    async def run() -> dict[str, Any]:
        await warm(url, requests, p["warm_seconds"], pause)
        out: dict[str, Any] = {}
        if levels:
            say(f"  {model}: c = {', '.join(map(str, LEVELS))}")
            out["levels"] = await closed_levels(url, requests, p, pause)
        if open_rate is not None:
            say(f"  {model}: load step c = {' -> '.join(map(str, STEP))}")
            out["step"] = await load_step(url, model, requests, p["step_seconds"], pause)
            say(f"  {model}: open loop at {open_rate:.1f} req/s")
            out["open_loop"] = await open_loop(url, requests, open_rate, p["open_seconds"])
        return out

    return asyncio.run(run())


# ---- the run ------------------------------------------------------------------------------------


def level(contender: dict[str, Any], concurrency: int) -> dict[str, Any]:
    return next(row for row in contender["levels"] if row["concurrency"] == concurrency)


def derive_targets_ms(best_at_16: dict[str, Any]) -> list[float]:
    """The best static setting's p99 at c = 16, and half of it, rounded up to 10 ms."""
    p99 = best_at_16["p99_ms"]
    return [max(10.0, math.ceil(p99 / share / 10.0) * 10.0) for share in (1, 2)]


def p99_check(scenario: str, row: dict[str, Any], target_ms: float, counts: bool) -> dict[str, Any]:
    p99 = row["p99_ms"]
    return {"scenario": scenario, "counts": counts, "p99_ms": p99, "met": p99 is not None and p99 <= target_ms}


def throughput_check(scenario: str, value: float, statics: list[dict[str, Any]], target_ms: float) -> dict[str, Any]:
    """`value` against the best static row of the scenario (judged), and against the best static row
    whose p99 kept the target too (context: None when none did)."""
    share = ratio(value, max(row["throughput_rps"] for row in statics))
    keeping = [row["throughput_rps"] for row in statics if row["p99_ms"] is not None and row["p99_ms"] <= target_ms]
    return {"scenario": scenario, "ratio": share, "met": share is not None and share >= THROUGHPUT_TARGET,
            "ratio_vs_best_static_within_target": ratio(value, max(keeping)) if keeping else None}


def below_capacity(concurrency: int, best_rps: float, target_ms: float) -> bool:
    """Whether `concurrency` requests in flight, served at `best_rps`, wait at most the target on average."""
    return best_rps > 0 and concurrency / best_rps * 1000.0 <= target_ms


def judge(results: dict[str, Any]) -> dict[str, Any]:
    """Per target: p99 <= T where the load is below capacity, throughput >= 0.95 x best static."""
    statics = results["static"].values()
    stepped = [s["step"] for s in statics if "step" in s]
    verdicts: dict[str, Any] = {}
    for name, contender in results["targets"].items():
        target_ms = contender["latency_target_ms"]
        p99s, throughputs = [], []
        for concurrency in LEVELS:
            row = level(contender, concurrency)
            rows = [level(s, concurrency) for s in statics]
            best = max(r["throughput_rps"] for r in rows)
            p99s.append(p99_check(f"c={concurrency}", row, target_ms, below_capacity(concurrency, best, target_ms)))
            throughputs.append(throughput_check(f"c={concurrency}", row["throughput_rps"], rows, target_ms))
        step = contender["step"]
        throughputs.append(throughput_check("step", step["overall"]["throughput_rps"],
                                            [s["overall"] for s in stepped], target_ms))
        for index, phase in enumerate(step["phases"]):
            best = max(s["phases"][index]["throughput_rps"] for s in stepped)
            p99s.append(p99_check(f"step phase {index + 1} (c={phase['concurrency']})", phase, target_ms,
                                  below_capacity(phase["concurrency"], best, target_ms)))
        offered = contender["open_loop"]
        p99s.append(p99_check(f"open loop {offered['offered_rps']} req/s", offered, target_ms, True))
        verdicts[name] = {
            "latency_target_ms": target_ms,
            "p99_within_target": p99s,
            "p99_met": all(r["met"] for r in p99s if r["counts"]),
            "throughput_vs_best_static": throughputs,
            "throughput_met": all(r["met"] for r in throughputs),
        }
    return verdicts


def run_comparison(args: argparse.Namespace, p: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    default_static = (default("max_batch_size"), default("max_latency_ms"))
    sweep = [default_static, *[s for s in p["sweep"] if tuple(s) != default_static]]
    names = {static_name(b, lat): {"max_batch_size": b, "max_latency_ms": lat} for b, lat in sweep}
    repository = write_variants(args, env, names)
    results: dict[str, Any] = {"default_static": static_name(*default_static), "static": {}, "targets": {}}

    say(f"server 1: {len(names)} static settings of {args.model}")
    server = serve(repository, list(names), args, env, "static")
    try:
        for name in names:
            results["static"][name] = {**names[name], **measure(server.url, name, args, p, 0.0, levels=True,
                                                                open_rate=None)}
        best = max(results["static"], key=lambda n: level(results["static"][n], 16)["throughput_rps"])
        results["best_static"] = best
        capacity = level(results["static"][best], 16)["throughput_rps"]
        results["capacity_rps"] = capacity
        targets = ([float(t) for t in args.latency_targets.split(",") if t] if args.latency_targets
                   else derive_targets_ms(level(results["static"][best], 16)))
        results["targets_derived"] = not args.latency_targets
        for name in dict.fromkeys([results["default_static"], best]):
            say(f"{name}: load step and open loop")
            results["static"][name].update(measure(server.url, name, args, p, 0.0, levels=False,
                                                   open_rate=OPEN_LOOP_LOAD * capacity))
        results["server_1_alive_at_end"] = server.alive()
    finally:
        results["server_1_exit_code"] = server.stop()

    upper = max(b for b, _ in sweep)
    variants = {target_name(t): {"max_batch_size": upper, "latency_target_ms": t, "max_queue_delay_ms": t}
                for t in targets}
    repository = write_variants(args, env, variants)
    say(f"server 2: latency targets {', '.join(f'{t:g} ms' for t in targets)}")
    server = serve(repository, list(variants), args, env, "targets")
    try:
        for name, settings in variants.items():
            pause = settings["latency_target_ms"] / 4000.0
            measured = measure(server.url, name, args, p, pause, levels=True, open_rate=OPEN_LOOP_LOAD * capacity)
            results["targets"][name] = {**settings, "refused_client_pause_s": pause, **measured}
        results["server_2_alive_at_end"] = server.alive()
    finally:
        results["server_2_exit_code"] = server.stop()
    results["verdicts"] = judge(results)
    return results


def render(r: dict[str, Any]) -> str:
    c = r["comparison"]
    parts = section_header("latency targets vs static batching", r)

    def row(name: str, scenario: str, data: dict[str, Any]) -> list[Any]:
        refused = data["statuses"].get("503", 0)
        return [name, scenario, data["p50_ms"], data["p99_ms"], data["throughput_rps"], refused,
                data["errors"] - refused]

    rows = []
    for name, contender in {**c["static"], **c["targets"]}.items():
        marks = [mark for owner, mark in ((c["default_static"], "default"), (c["best_static"], "best static"))
                 if owner == name]
        label = name + (f" ({', '.join(marks)})" if marks else "")
        rows += [row(label, f"c={lvl['concurrency']}", lvl) for lvl in contender["levels"]]
        if "step" in contender:
            rows.append(row(label, "step 2->16->2", contender["step"]["overall"]))
            rows += [row("", f"  c={phase['concurrency']}, batch {_f(phase['chosen_batch_size_mean'], 2)}", phase)
                     for phase in contender["step"]["phases"]]
            offered = contender["open_loop"]
            rows.append(row(label, f"open {offered['offered_rps']} req/s", offered))
    parts.append("\n" + _table(["setting", "scenario", "p50 ms", "p99 ms", "req/s", "503", "other errors"], rows))
    parts.append(f"\ncapacity (best static at c=16): {c['capacity_rps']} req/s; targets "
                 f"{'derived: the best static p99 at c=16 and half of it' if c['targets_derived'] else 'given'}")
    for name, verdict in c["verdicts"].items():
        parts.append(f"\n{name}: p99 <= {verdict['latency_target_ms']:g} ms where the load is below capacity: "
                     f"{'met' if verdict['p99_met'] else 'MISSED'}; throughput >= {THROUGHPUT_TARGET} x best "
                     f"static: {'met' if verdict['throughput_met'] else 'MISSED'}")
        for item in verdict["p99_within_target"]:
            note = "" if item["counts"] else " (load above capacity: not counted)"
            parts.append(f"  p99 {item['scenario']}: {_f(item['p99_ms'])} ms {'met' if item['met'] else 'over'}{note}")
        for item in verdict["throughput_vs_best_static"]:
            parts.append(f"  throughput {item['scenario']}: {_f(item['ratio'], 3)} of best static, "
                         f"{_f(item['ratio_vs_best_static_within_target'], 3)} of best static within the target")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = chosen_profile(args, PROFILES)
    if args.duration is not None:
        p["duration"] = p["step_seconds"] = p["open_seconds"] = args.duration
    stamp, env, began, results = open_run(args, "latency", argv)
    results["settings"] = p
    results["comparison"] = run_comparison(args, p, env)
    return publish(results, began, args.log_dir, args.out_dir / f"latency-{stamp}.json", render)


if __name__ == "__main__":
    sys.exit(main())
