"""Soak run: mixed valid and invalid traffic on every served model for N minutes; does the server leak?

    .venv/bin/python -m bench soak --minutes 5                 # the four demo models (make-demo-models)
    .venv/bin/python -m bench soak --minutes 0.2 --models tiny # seconds-long smoke run on tiny classifiers

The server runs as a child process on a free loopback port. After a warm-up (every valid request kind at
each batch size once, then the same mixed traffic for a while), the resident memory (RSS), open file
descriptors and threads of the server process are read from /proc; the traffic goes on for the given
minutes at bounded concurrency, then, once the server is idle again, they are read a second time. The
growth in % of each is reported (target: < 5 %), with a timeline, the answers per request kind and
status, and any answer other than the documented one (a 5xx included).
The results go to ``bench/results/soak-<time>.json``. This process must not import KServe or the
server's model code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import v2_binary_body
from bench.loadgen import make_client
from devtools.images import sample_jpeg
from devtools.procs import free_port, start

BENCH_DIR = Path(__file__).resolve().parent
DEMO_MODELS = ("general-recognition", "image-classification", "face-enhancement", "visual-entailment")
TINY_MODELS = ("tiny", "tiny-batch")
TARGET_GROWTH_PERCENT = 5.0


@dataclass(frozen=True)
class Kind:
    """One kind of request: how to build it and the answer the README documents for it."""

    name: str
    model: str
    path: str
    body: bytes
    headers: dict[str, str]
    expected: int
    weight: float = 1.0
    #: a client that disconnects: "mid-body" or "before-answer"
    hang_up: str | None = None


def _bomb_png() -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


def _instance(model: str, image: bytes) -> dict[str, Any]:
    instance: dict[str, Any] = {"image": {"b64": base64.b64encode(image).decode()}}
    if model == "visual-entailment":
        instance["hypothesis"] = "a picture of shapes"
    return instance


def request_kinds(models: tuple[str, ...]) -> list[Kind]:
    json_type = {"content-type": "application/json"}
    kinds: list[Kind] = []
    for index, model in enumerate(models):
        # face enhancement runs a 512 px GPEN pass per face (seconds on a CPU): small images, and rarely
        slow = model == "face-enhancement"
        size = (16, 16) if slow else (160, 120)
        weight = 0.05 if slow else 1.0
        image = sample_jpeg(index, size)
        v1 = f"/v1/models/{model}:predict"
        v2 = f"/v2/models/{model}/infer"

        def v1_body(data: bytes, model: str = model) -> bytes:
            return json.dumps({"instances": [_instance(model, data)]}).encode()

        kinds += [
            Kind("v1", model, v1, v1_body(image), json_type, 200, weight),
            Kind("v1-corrupt-image", model, v1, v1_body(b"\xff\xd8\xff\xe0 not a jpeg"), json_type, 400),
            Kind("v1-truncated-image", model, v1, v1_body(sample_jpeg(3, (96, 96))[:1500]), json_type, 400),
            Kind("v1-bomb", model, v1, v1_body(_bomb_png()), json_type, 413),
            Kind("v1-malformed-json", model, v1, b'{"instances": [', json_type, 400),
            Kind("v1-hang-up-mid-body", model, v1, v1_body(image), json_type, 0, hang_up="mid-body"),
            Kind("v1-hang-up-before-answer", model, v1, v1_body(image), json_type, 0, weight, hang_up="before-answer"),
            Kind("v2-wrong-shape", model, v2, json.dumps({"inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [3], "data": ["AAAA"]}]}).encode(), json_type, 400),
        ]
        if model != "visual-entailment":  # its requests need a hypothesis tensor as well
            body, header_length = v2_binary_body(image)
            if model == "face-enhancement":
                body, header_length = _without_requested_outputs(image)
            binary = {"content-type": "application/octet-stream",
                      "inference-header-content-length": str(header_length)}
            lying = {**binary, "inference-header-content-length": str(header_length + 7)}
            kinds += [
                Kind("v2-binary", model, v2, body, binary, 200, weight),
                Kind("v2-binary-lying-header", model, v2, body, lying, 400),
            ]
    unknown = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AAAA"]}]})
    kinds.append(Kind("unknown-model", "-", "/v2/models/no-such-model/infer", unknown.encode(), json_type, 404))
    return kinds


def _without_requested_outputs(image: bytes) -> tuple[bytes, int]:
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(tensor)}}]}).encode()
    return header + tensor, len(header)


# ---- the server process, as /proc shows it -----------------------------------------------------------


def process_resources(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


def growth(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    return {key: round((end[key] - start[key]) / start[key] * 100, 2) for key in start}


# ---- traffic ---------------------------------------------------------------------------------------


async def traffic(url: str, kinds: list[Kind], concurrency: int, seconds: float, rng: random.Random,
                  tally: Counter[tuple[str, str, int]], unexpected: list[dict[str, Any]]) -> int:
    """Closed loop: `concurrency` workers send randomly chosen kinds until `seconds` have passed."""
    weights = [kind.weight for kind in kinds]
    sent = 0
    stop_at = time.monotonic() + seconds
    async with make_client(url, concurrency, timeout=300.0) as client:

        async def worker() -> None:
            nonlocal sent
            while time.monotonic() < stop_at:
                (kind,) = rng.choices(kinds, weights)
                sent += 1
                status = await _send(client, kind)
                tally[(kind.model, kind.name, status)] += 1
                if status != kind.expected and len(unexpected) < 50:
                    unexpected.append({"model": kind.model, "kind": kind.name, "status": status,
                                       "expected": kind.expected})

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def _send(client: httpx.AsyncClient, kind: Kind) -> int:
    """The answer's status; 0 for a request the client hung up on (as intended for hang-up kinds)."""
    if kind.hang_up is not None:
        await _hang_up(client, kind)
        return 0
    try:
        response = await client.post(kind.path, content=kind.body, headers=kind.headers)
        return response.status_code
    except httpx.HTTPError:
        return -1


async def _hang_up(client: httpx.AsyncClient, kind: Kind) -> None:
    """A raw connection that sends the head and part of the body ("mid-body") or all of it ("before-answer"),
    then closes. (Cancelling an httpx request instead can leave its connection pool waiting forever.)"""
    url = httpx.URL(str(client.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in kind.headers.items())
    writer.write(f"POST {kind.path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: {len(kind.body)}\r\n"
                 f"{head}\r\n".encode())
    writer.write(kind.body[: len(kind.body) // 2] if kind.hang_up == "mid-body" else kind.body)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def prime(url: str, kinds: list[Kind], concurrency: int) -> None:
    """Every valid kind at 1, 2, 4 ... `concurrency` requests at once, so that every batch size each model
    will see has run (and allocated its buffers) before the first reading. Face enhancement stops at 4."""
    sizes = [size for size in (1, 2, 4, 8, 16, 32, 64) if size <= concurrency]
    async with make_client(url, concurrency, timeout=600.0) as client:
        for kind in kinds:
            if kind.expected != 200:
                continue
            for size in sizes if kind.model != "face-enhancement" else [s for s in sizes if s <= 4]:
                await asyncio.gather(*(_send(client, kind) for _ in range(size)))


def metrics_values(url: str, name: str) -> dict[str, float]:
    """label set -> value of one metric family from /metrics."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            values[labels[len(name):]] = float(value)
    return values


def wait_idle(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [value for name in ("predictors_requests_in_flight", "predictors_queue_depth_items")
                for value in metrics_values(url, name).values() if value]
        if not busy:
            return True
        time.sleep(0.5)
    return False


# ---- the run ---------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True, help="traffic after the warm-up")
    parser.add_argument("--models", choices=["demo", "tiny"], default="demo",
                        help="demo: the four demo models (default); tiny: two tiny classifiers (smoke runs)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at most")
    parser.add_argument("--warmup-seconds", type=float, default=None,
                        help="mixed traffic before the first reading, after every valid request kind ran at "
                             "each batch size (default: 25 %% of the run, 10..90 s)")
    parser.add_argument("--sample-seconds", type=float, default=15.0, help="timeline resolution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the server")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / "results" / "work")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--start-timeout", type=float, default=900.0)
    return parser.parse_args(argv)


def _repository(args: argparse.Namespace, env: dict[str, str]) -> tuple[Path, tuple[str, ...]]:
    if args.models == "tiny":
        subprocess.run([sys.executable, "-m", "bench.models", str(args.work_dir), "--kind", "tiny",
                        "--max-batch-size", "8", "--max-latency-ms", "5", "--max-queue", "64",
                        "--overload-max-queue", "16"], check=True, env={**os.environ, **env},
                       cwd=BENCH_DIR.parent, capture_output=True, timeout=args.start_timeout)
        return args.work_dir / "repository-tiny", TINY_MODELS
    repository = args.work_dir / "demo-all"
    subprocess.run([sys.executable, "-m", "predictors", "make-demo-models", str(repository)], check=True,
                   env={**os.environ, **env}, cwd=BENCH_DIR.parent, capture_output=True,
                   timeout=args.start_timeout)
    return repository, DEMO_MODELS


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.work_dir = args.work_dir.resolve()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = args.work_dir / "logs" / f"soak-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "MODELSCOPE_CACHE": str(args.work_dir / "modelscope-cache"), "PYTHONUNBUFFERED": "1"}
    seconds = args.minutes * 60
    warmup = args.warmup_seconds if args.warmup_seconds is not None else min(90.0, max(10.0, 0.25 * seconds))
    repository, models = _repository(args, env)
    kinds = request_kinds(models)
    port = free_port()
    server = start("server", [sys.executable, "-m", "predictors", "serve", "--model-repository", str(repository),
                              "--http-port", str(port), "--grpc-port", str(free_port()), "--device", "cpu",
                              "--no-access-log"], port, log_dir, env)
    rng = random.Random(args.seed)
    tally: Counter[tuple[str, str, int]] = Counter()
    unexpected: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench soak", *argv]),
        "models": list(models), "concurrency": args.concurrency, "minutes": args.minutes,
        "warmup_s": warmup, "load_average_at_start": list(os.getloadavg()),
    }
    try:
        results["startup_s"] = round(server.wait_ready([f"/v2/models/{m}/ready" for m in models],
                                                       args.start_timeout), 1)
        asyncio.run(prime(server.url, kinds, args.concurrency))
        asyncio.run(traffic(server.url, kinds, args.concurrency, warmup, rng, Counter(), []))
        wait_idle(server.url, 120)
        start_reading = process_resources(server.process.pid)
        timeline = [{"t_s": 0.0, **start_reading}]
        began = time.monotonic()
        sent = 0
        while (left := seconds - (time.monotonic() - began)) > 0:
            sent += asyncio.run(traffic(server.url, kinds, args.concurrency, min(left, args.sample_seconds), rng,
                                        tally, unexpected))
            timeline.append({"t_s": round(time.monotonic() - began, 1), **process_resources(server.process.pid)})
        results["idle_at_end"] = wait_idle(server.url, 120)
        end_reading = process_resources(server.process.pid)
        results.update(
            requests=sent, start=start_reading, end=end_reading, growth_percent=growth(start_reading, end_reading),
            timeline=timeline, server_alive=server.alive(),
            ready_at_end=httpx.get(f"{server.url}/v2/health/ready", timeout=10, trust_env=False).status_code == 200,
            answers=[{"model": m, "kind": k, "status": s, "count": c} for (m, k, s), c in sorted(tally.items())],
            unexpected=unexpected,
            server_errors_5xx=sum(c for (_, _, s), c in tally.items() if s >= 500),
            # warm-up included
            requests_total_by_code=_by_code(metrics_values(server.url, "predictors_requests_total")),
        )
    finally:
        results["server_exit_code"] = server.stop()
        results["tracebacks_in_log"] = server.log_path.read_text(errors="replace").count("Traceback")
    results["load_average_at_end"] = list(os.getloadavg())
    results["target_met"] = bool(
        results.get("server_alive") and results.get("ready_at_end") and not results.get("unexpected")
        and results["tracebacks_in_log"] == 0
        and all(value < TARGET_GROWTH_PERCENT for value in results.get("growth_percent", {"-": 100}).values())
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"soak-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nJSON: {out}\nserver log: {server.log_path}")
    return 0 if results.get("server_alive") and not results.get("unexpected") else 1


def _by_code(values: dict[str, float]) -> dict[str, float]:
    codes: defaultdict[str, float] = defaultdict(float)
    for labels, value in values.items():
        code = labels.split('code="', 1)[1].split('"', 1)[0] if 'code="' in labels else "?"
        codes[code] += value
    return dict(sorted(codes.items()))


def render(results: dict[str, Any]) -> str:
    lines = [f"soak: {results['command']}",
             f"models {', '.join(results['models'])}; concurrency {results['concurrency']}; "
             f"{results.get('requests', 0)} requests in {results['minutes']} min after {results['warmup_s']:.0f} s "
             f"of warm-up; load average {results['load_average_at_start'][0]:.1f} -> "
             f"{results['load_average_at_end'][0]:.1f}"]
    if "start" in results:
        lines.append(f"{'':14}{'start':>10}{'end':>10}{'growth':>10}")
        for key, label in (("rss_mib", "RSS MiB"), ("open_fds", "open fds"), ("threads", "threads")):
            lines.append(f"{label:14}{results['start'][key]:>10}{results['end'][key]:>10}"
                         f"{results['growth_percent'][key]:>9.2f}%")
        lines.append(f"answers by code: {results['requests_total_by_code']}")
    lines.append(f"unexpected answers: {results.get('unexpected')}; tracebacks in log: "
                 f"{results['tracebacks_in_log']}; server alive: {results.get('server_alive')}; "
                 f"target (< {TARGET_GROWTH_PERCENT:.0f} % growth, no unexpected answer) met: {results['target_met']}")
    return "\n".join(lines)
