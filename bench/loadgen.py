"""asyncio + httpx load generation on loopback, bounded in request count and in time.

- `closed_loop`: C workers, each sends its next request when the previous one answered, until
  `duration` has passed or `max_requests` were sent; requests in flight at the end are awaited (each
  is bounded by the client timeout). Throughput = successful answers / wall time including that drain.
- `open_loop`: requests leave at a fixed rate whatever the server does (offered load), for `duration`
  seconds; the client caps what it keeps outstanding and counts what it had to skip.
- `stepped_loop`: a closed loop whose concurrency changes over time (e.g. 2 -> 16 -> 2), without
  draining between the steps; `RunResult.window` cuts out one step.

A closed-loop client told 503 (refused) may pause before its next request (`pause_after_busy`), as a
client backing off would, instead of hammering the server with refused requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import Request, latency_summary

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"the benchmark only generates load on loopback; refusing {url}")


@dataclass
class Outcome:
    started: float  # seconds since the run began
    latency: float  # seconds
    status: int  # HTTP status; 0 = transport error or client timeout
    error: str | None = None


@dataclass
class RunResult:
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed: float = 0.0
    skipped: int = 0  # open loop: arrivals not sent because `max_outstanding` were in flight

    def window(self, start: float, end: float) -> RunResult:
        """The requests sent in [start, end) seconds of the run, as a run of `end - start` seconds."""
        inside = [o for o in self.outcomes if start <= o.started < end]
        return RunResult(outcomes=inside, elapsed=end - start)

    def summary(self) -> dict[str, Any]:
        ok = [o.latency for o in self.outcomes if o.status == 200]
        statuses = Counter(str(o.status) for o in self.outcomes)
        errors = len(self.outcomes) - len(ok)
        transport = Counter(o.error for o in self.outcomes if o.error)
        return {
            "requests": len(self.outcomes),
            "ok": len(ok),
            "errors": errors,
            "statuses": dict(sorted(statuses.items())),
            "transport_errors": dict(transport),
            "skipped_by_client": self.skipped,
            "elapsed_s": round(self.elapsed, 3),
            "throughput_rps": round(len(ok) / self.elapsed, 3) if self.elapsed > 0 else 0.0,
            **latency_summary(ok),
        }


def make_client(base_url: str, connections: int, timeout: float) -> httpx.AsyncClient:
    check_loopback(base_url)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout, trust_env=False)


async def _send(client: httpx.AsyncClient, request: Request, origin: float) -> Outcome:
    path, body, headers = request
    started = time.perf_counter()
    try:
        response = await client.post(path, content=body, headers=headers)
        await response.aread()
        status, error = response.status_code, None
    except httpx.HTTPError as exc:
        status, error = 0, type(exc).__name__
    return Outcome(started - origin, time.perf_counter() - started, status, error)


async def _send_and_pause(client: httpx.AsyncClient, request: Request, origin: float, result: RunResult,
                          pause_after_busy: float) -> None:
    outcome = await _send(client, request, origin)
    result.outcomes.append(outcome)
    if outcome.status == 503 and pause_after_busy > 0:
        await asyncio.sleep(pause_after_busy)


async def closed_loop(
    base_url: str,
    requests: Sequence[Request],
    concurrency: int,
    duration: float,
    max_requests: int,
    timeout: float = 120.0,
    pause_after_busy: float = 0.0,
) -> RunResult:
    result = RunResult()
    sent = 0
    async with make_client(base_url, concurrency, timeout) as client:
        origin = time.perf_counter()
        stop_at = origin + duration

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < stop_at and sent < max_requests:
                request = requests[sent % len(requests)]
                sent += 1
                await _send_and_pause(client, request, origin, result, pause_after_busy)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - origin
    return result


async def stepped_loop(
    base_url: str,
    requests: Sequence[Request],
    steps: Sequence[tuple[int, float]],
    timeout: float = 120.0,
    pause_after_busy: float = 0.0,
) -> RunResult:
    """Closed loop at each (concurrency, seconds) of `steps` in turn: worker i sends while the current
    step's concurrency exceeds i; requests in flight when a step ends finish in the next."""
    result = RunResult()
    ends = list(itertools.accumulate(seconds for _, seconds in steps))
    top = max(concurrency for concurrency, _ in steps)
    async with make_client(base_url, top, timeout) as client:
        origin = time.perf_counter()

        def concurrency_now() -> int | None:
            elapsed = time.perf_counter() - origin
            return next((c for (c, _), end in zip(steps, ends, strict=True) if elapsed < end), None)

        async def worker(index: int) -> None:
            sent = 0
            while (concurrency := concurrency_now()) is not None:
                if index >= concurrency:
                    await asyncio.sleep(0.02)  # not needed in this step
                    continue
                request = requests[(index + sent * top) % len(requests)]
                sent += 1
                await _send_and_pause(client, request, origin, result, pause_after_busy)

        await asyncio.gather(*(worker(i) for i in range(top)))
        result.elapsed = time.perf_counter() - origin
    return result


async def open_loop(
    base_url: str,
    requests: Sequence[Request],
    rate: float,
    duration: float,
    max_requests: int,
    max_outstanding: int,
    timeout: float = 120.0,
    on_tick: Callable[[], Any] | None = None,
) -> RunResult:
    result = RunResult()
    count = min(max_requests, max(1, int(rate * duration)))
    interval = 1.0 / rate
    outstanding: set[asyncio.Task[Outcome]] = set()

    def finished(task: asyncio.Task[Outcome]) -> None:
        outstanding.discard(task)
        result.outcomes.append(task.result())

    async with make_client(base_url, max_outstanding, timeout) as client:
        origin = time.perf_counter()
        for i in range(count):
            delay = origin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(outstanding) >= max_outstanding:
                result.skipped += 1
                continue
            task = asyncio.create_task(_send(client, requests[i % len(requests)], origin))
            outstanding.add(task)
            task.add_done_callback(finished)
        while outstanding:
            await asyncio.gather(*list(outstanding))
        result.elapsed = time.perf_counter() - origin
    return result


async def probe_health(
    base_url: str, stop: asyncio.Event, interval: float = 0.5, timeout: float = 5.0
) -> dict[str, Any]:
    """Poll /v2/health/live until `stop` is set: how many answered 200, and how slowly."""
    latencies: list[float] = []
    failures = 0
    async with make_client(base_url, 1, timeout) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = (await client.get("/v2/health/live")).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    return {"probes": len(latencies) + failures, "failures": failures, **latency_summary(latencies)}
