"""Asynchronous jobs against synchronous inference, on a real server and a real Redis.

    .venv/bin/python -m bench jobs                  # general recognition (ResNeSt-101), ~4.5 min on a quiet CPU
    .venv/bin/python -m bench jobs --quick          # the same, shorter (~2 min with the start-up)
    .venv/bin/python -m bench jobs --smoke --model tiny   # seconds, plumbing only (the tests)

One server process serves one model with the server's batching defaults and consumes its jobs from a
Debian `redis-server` started here on a free loopback port in a temporary directory (devtools/redis_server.py,
as the jobs' tests do). The same v1 JSON bodies go to ``:predict`` and to ``:submit``.

1. sync: closed loop at c = 16 (two full batches in flight; the job worker keeps at most 3 x
   max_batch_size jobs in flight) after a warm-up; items/s. Measured before the first burst and after
   each job scenario; each job scenario is compared with the mean of the two sync runs around it
   (`sync_reference`), so a machine that drifts during the run moves both sides alike. Burst and steady
   run `rounds` times (full: 2), each round with its own sync runs; a throughput target is judged on the
   mean of the rounds' ratios, the busy submit p99 on every round's submits.
2. burst: N jobs (the sync rate x `burst_seconds`, at least `burst_min_jobs`) submitted back to back by
   `SUBMITTERS` concurrent clients, which is far faster than the model runs them, so the backlog stays
   above 0 until the end. Throughput = jobs succeeded / (first submit sent -> last ``finished_at``).
3. steady: for `steady_seconds` the submitters keep about `STEADY_BACKLOG` jobs unfinished (a new one
   whenever one finished), then the jobs drain: a closed loop of jobs, measured as the sync closed loop is
   (ramp-up and drain included): jobs succeeded / (first submit sent -> last ``finished_at``). Its submit
   latencies are the "busy" ones: the 202 while the model is saturated with jobs.
4. idle: `idle_submits` submits one at a time, each after the previous job finished; the 202 of an idle
   server.

One client per scenario follows the jobs in submission order, one request at a time on the oldest unfinished
one, sending what the SDK's `wait` sends (long polls ``GET /v2/jobs/{id}?wait=20``, answered as soon as the
job ends), so the server answers the requests one client of ours makes; finish times are the server's
``finished_at``, not when the follower noticed.

Targets: job throughput >= 0.95 x sync throughput (burst and steady), submit p99 <= 20 ms (busy and idle),
and exactly once: every submit accepted, every job succeeded with one result each, the server's
``predictors_jobs_total{status="succeeded"}`` equal to the jobs submitted and nothing left pending in the
consumer group. Results go to ``bench/results/jobs-<time>.json``. This process imports neither KServe nor
model code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from predictors_client.jobs import LONG_POLL_GRACE_SECONDS, LONG_POLL_SECONDS, LongPolls, Polling, long_poll_path

from bench import loadgen
from bench.common import Request, latency_summary, ratio
from bench.harness import chosen_profile, open_run, parse_section_args, publish, say, section_parser
from bench.latency import requests_for, serve, write_variants
from bench.models import MODEL_KINDS
from bench.report import _f, _table, section_header
from devtools.procs import Child
from devtools.redis_server import RedisServer
from predictors.settings import default

SYNC_CONCURRENCY = 16
SUBMITTERS = 4
#: unfinished jobs the steady scenario keeps: twice what the worker runs at once at batch size 8
STEADY_BACKLOG = 32
#: how often the follower looks for a newly submitted job (no request is sent meanwhile)
IDLE_SECONDS = 0.05
THROUGHPUT_TARGET = 0.95
SUBMIT_P99_TARGET_MS = 20.0
FINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_JOBS = 5000

PROFILES: dict[str, dict[str, Any]] = {
    "full": {"model": "general-recognition", "warm_seconds": 5.0, "sync_seconds": 20.0, "burst_seconds": 20.0,
             "burst_min_jobs": 100, "steady_seconds": 20.0, "idle_submits": 200, "rounds": 2},
    "quick": {"model": "general-recognition", "warm_seconds": 2.0, "sync_seconds": 6.0, "burst_seconds": 8.0,
              "burst_min_jobs": 40, "steady_seconds": 8.0, "idle_submits": 60, "rounds": 1},
    "smoke": {"model": "tiny", "warm_seconds": 0.3, "sync_seconds": 0.5, "burst_seconds": 0.5,
              "burst_min_jobs": 40, "steady_seconds": 0.5, "idle_submits": 8, "rounds": 2},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = section_parser("jobs", __doc__ or "", "shorter scenarios (~2 min with the start-up)", MODEL_KINDS)
    parser.add_argument("--jobs", type=int, help="jobs of the burst (default: sync rate x the profile's seconds)")
    return parse_section_args(parser, argv)


# ---- following jobs ---------------------------------------------------------------------------------


@dataclass
class Submitted:
    job_id: str
    sample: int  # index of the request body (its synchronous answer is the reference)
    sent_at: float  # wall clock (time.time(), as the server's times) when the submit left
    latency: float  # seconds to the 202


@dataclass
class Ledger:
    """The jobs of one scenario: what was submitted, how each ended, and how far the follower got."""

    submitted: list[Submitted] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # submit answers other than 202
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its final GET
    reserved: int = 0  # submits sent or about to be (the steady scenario's backlog count)
    followed: int = 0  # the first `followed` jobs have ended
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    submitting_done: bool = False

    def unfinished(self) -> int:
        return self.reserved - self.followed


async def submit(client: httpx.AsyncClient, requests: list[Request], ledger: Ledger) -> None:
    sample = ledger.reserved % len(requests)
    ledger.reserved += 1
    path, body, headers = requests[sample]
    sent_at, started = time.time(), time.perf_counter()
    try:
        response = await client.post(path, content=body, headers=headers)
    except httpx.HTTPError as error:
        ledger.refused[type(error).__name__] += 1
        ledger.reserved -= 1
        return
    latency = time.perf_counter() - started
    if response.status_code != 202:
        ledger.refused[str(response.status_code)] += 1
        ledger.reserved -= 1
        return
    ledger.submitted.append(Submitted(response.json()["id"], sample, sent_at, latency))


async def follow(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """Follow the oldest unfinished job until it has ended, then the next, until the submitters are done and
    every job they submitted has ended. Each job is followed as the SDK's `wait` follows one (`LongPolls`):
    long polls ``GET /v2/jobs/{id}?wait=20`` that the server answers as soon as the job ends, and `Polling`'s
    pauses only after an answer that came back early with the job unfinished, so the server answers the
    requests a client of ours makes."""
    polls: LongPolls | None = None
    while True:
        if ledger.followed >= len(ledger.submitted):
            if ledger.submitting_done and ledger.followed >= len(ledger.submitted):
                return
            await asyncio.sleep(IDLE_SECONDS)
            continue
        job = ledger.submitted[ledger.followed]
        polls = polls or LongPolls(job.job_id, math.inf)  # no deadline: followed until it ends
        hold = polls.hold(None)
        try:
            response = await client.get(long_poll_path(job.job_id, hold), timeout=hold + LONG_POLL_GRACE_SECONDS)
        except httpx.HTTPError:
            await asyncio.sleep(polls.pause())
            continue
        document = response.json() if response.status_code == 200 else {"status": f"http {response.status_code}"}
        if response.status_code == 200 and document["status"] not in FINAL:
            await asyncio.sleep(polls.pause())
            continue
        ledger.documents[job.job_id] = document
        ledger.followed += 1
        polls = None  # the next job's requests start afresh
        ledger.progress.set()


def clients(url: str) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """The submitters' client and the follower's."""
    return loadgen.make_client(url, SUBMITTERS, 30.0), loadgen.make_client(url, 1, 30.0)


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def job_rows(ledger: Ledger) -> list[tuple[Submitted, dict[str, Any]]]:
    return [(job, ledger.documents[job.job_id]) for job in ledger.submitted if job.job_id in ledger.documents]


def scenario_summary(ledger: Ledger) -> dict[str, Any]:
    """Counts, submit latency and the server's own times of the jobs (queued = created -> started)."""
    rows = job_rows(ledger)
    done = [doc for _, doc in rows if doc.get("status") == "succeeded"]
    queued = [epoch(doc["started_at"]) - epoch(doc["created_at"]) for doc in done]
    total = [epoch(doc["finished_at"]) - epoch(doc["created_at"]) for doc in done]
    return {
        "submitted": len(ledger.submitted),
        "refused": dict(ledger.refused),
        "succeeded": len(done),
        "submit": latency_summary([job.latency for job in ledger.submitted]),
        "job_queued": latency_summary(queued),
        "job_total": latency_summary(total),
    }


def throughput(ledger: Ledger) -> dict[str, Any]:
    """Jobs succeeded / (first submit sent -> last ``finished_at``), and how long submitting took."""
    finishes = [epoch(doc["finished_at"]) for _, doc in job_rows(ledger) if doc.get("status") == "succeeded"]
    if not finishes:
        return {"submitting_s": None, "seconds": None, "throughput_jobs_per_s": 0.0}
    sent = [job.sent_at for job in ledger.submitted]
    seconds = max(finishes) - min(sent)
    return {"submitting_s": round(max(sent) - min(sent), 3), "seconds": round(seconds, 3),
            "throughput_jobs_per_s": round(len(finishes) / seconds, 3) if seconds > 0 else 0.0}


# ---- scenarios --------------------------------------------------------------------------------------


async def warm_up(url: str, requests: list[Request], p: dict[str, Any]) -> None:
    warm = await loadgen.closed_loop(url, requests, SYNC_CONCURRENCY, p["warm_seconds"], 100_000)
    if not any(o.status == 200 for o in warm.outcomes):
        raise RuntimeError(f"warm-up against {url}{requests[0][0]} failed: {warm.outcomes[:3]}")


async def sync_saturation(url: str, requests: list[Request], p: dict[str, Any]) -> dict[str, Any]:
    result = await loadgen.closed_loop(url, requests, SYNC_CONCURRENCY, p["sync_seconds"], 1_000_000)
    return {"concurrency": SYNC_CONCURRENCY, **result.summary()}


def sync_reference(*runs: dict[str, Any]) -> dict[str, Any]:
    """The sync rate a job scenario is compared with: the mean of the sync runs just before and just after
    it, so that a machine drifting during the run (a neighbour, the CPU's clock: sync runs of one server
    measured 10.6, 11.1 and 12.1 items/s a minute apart) moves both sides of the ratio alike."""
    rates = [run["throughput_rps"] for run in runs]
    return {"runs_rps": rates, "throughput_rps": round(sum(rates) / len(rates), 3)}


async def burst(url: str, requests: list[Request], count: int) -> dict[str, Any]:
    ledger = Ledger()
    submitters, follower = clients(url)
    async with submitters, follower:
        async def submitter() -> None:
            while ledger.reserved < count:
                await submit(submitters, requests, ledger)

        following = asyncio.create_task(follow(follower, ledger))
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        ledger.submitting_done = True
        await following
    summary = scenario_summary(ledger)
    last_sent = max((job.sent_at for job in ledger.submitted), default=0.0)
    # jobs the worker had not taken yet when the last submit left: 0 would mean the model kept up with the
    # submitters (the burst then measured the submitters, not the model)
    waiting = sum(1 for _, doc in job_rows(ledger) if doc.get("started_at") and epoch(doc["started_at"]) > last_sent)
    return {"ledger": ledger, "jobs": count, "submitters": SUBMITTERS, **summary, **throughput(ledger),
            "not_taken_when_submitting_ended": waiting}


async def steady(url: str, requests: list[Request], seconds: float, backlog: int) -> dict[str, Any]:
    ledger = Ledger()
    submitters, follower = clients(url)
    async with submitters, follower:
        origin = time.time()
        stop_at = origin + seconds

        async def submitter() -> None:
            while time.time() < stop_at:
                if ledger.unfinished() >= backlog:
                    ledger.progress.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(ledger.progress.wait(), timeout=IDLE_SECONDS)
                    continue
                await submit(submitters, requests, ledger)

        following = asyncio.create_task(follow(follower, ledger))
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        ledger.submitting_done = True
        await following  # drained: every job submitted has ended (the exactly-once check needs them all)
    inside = [doc for _, doc in job_rows(ledger)
              if doc.get("status") == "succeeded" and origin <= epoch(doc["finished_at"]) < stop_at]
    return {"ledger": ledger, "backlog": backlog, "submitters": SUBMITTERS, **scenario_summary(ledger),
            "backlog_seconds": seconds, "finished_while_submitting": len(inside), **throughput(ledger)}


async def idle(url: str, requests: list[Request], count: int) -> dict[str, Any]:
    ledger = Ledger()
    submitters, follower = clients(url)
    async with submitters, follower:
        following = asyncio.create_task(follow(follower, ledger))
        for _ in range(count):
            await submit(submitters, requests, ledger)
            while ledger.followed < len(ledger.submitted):  # the server is idle again once the job ended
                ledger.progress.clear()
                await ledger.progress.wait()
        ledger.submitting_done = True
        await following
    return {"ledger": ledger, **scenario_summary(ledger)}


# ---- checks ------------------------------------------------------------------------------------------


def close_enough(a: Any, b: Any) -> bool:
    """Equal, floats within 1e-3 (a batch of 8 and a batch of 1 need not round the same)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-3,
                                                                                             abs_tol=1e-4)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_enough(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close_enough(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def succeeded_counter(metrics: str, model: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("predictors_jobs_total{") and f'model="{model}"' in line and 'status="succeeded"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def exactly_once(ledgers: list[Ledger], references: list[Any], server: Child, model: str,
                 redis: RedisServer) -> dict[str, Any]:
    rows = [row for ledger in ledgers for row in job_rows(ledger)]
    submitted = [job for ledger in ledgers for job in ledger.submitted]
    ids = [job.job_id for job in submitted]
    statuses = Counter(str(doc.get("status")) for _, doc in rows)
    with_result = [(job, doc) for job, doc in rows if doc.get("status") == "succeeded" and "result" in doc]
    metrics = httpx.get(server.url + "/metrics", timeout=10, trust_env=False).text
    with contextlib.closing(redis.client()) as client:
        pending = int(client.xpending(f"predictors:jobs:{model}", "predictors")["pending"])
    out: dict[str, Any] = {
        "submitted": len(submitted),
        "refused": sum(sum(ledger.refused.values()) for ledger in ledgers),
        "distinct_ids": len(set(ids)),
        "statuses": dict(statuses),
        "with_result": len(with_result),
        "run_more_than_once": sum(1 for _, doc in rows if doc.get("attempts", 0) > 1),
        "matching_sync_answer": sum(1 for job, doc in with_result if close_enough(doc["result"],
                                                                                  references[job.sample])),
        "server_succeeded_counter": succeeded_counter(metrics, model),
        "redis_pending_entries": pending,
    }
    out["met"] = (out["refused"] == 0 and out["distinct_ids"] == len(submitted) == out["with_result"] > 0
                  and statuses.get("succeeded", 0) == len(submitted) and pending == 0
                  and out["server_succeeded_counter"] == len(submitted))
    return out


def every_round(results: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    """A job scenario's runs: the first round's (under the scenario's own name), then the other rounds'."""
    return [results[scenario], *(extra[scenario] for extra in results["more_rounds"])]


def judge(results: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for name in ("burst", "steady"):
        runs = every_round(results, name)
        ratios = [ratio(run["throughput_jobs_per_s"], run["sync_reference"]["throughput_rps"]) for run in runs]
        # each round against the sync runs around it; the rounds' mean: the drift of the machine between
        # rounds moves both sides of each ratio alike
        known = [value for value in ratios if value is not None]
        value = round(sum(known) / len(known), 3) if known and len(known) == len(ratios) else None
        detail = "; ".join(f"{run['throughput_jobs_per_s']} jobs/s vs {run['sync_reference']['throughput_rps']} "
                           f"items/s" for run in runs)
        targets[f"throughput_{name}"] = {
            "goal": f">= {THROUGHPUT_TARGET} x sync items/s at c = {SYNC_CONCURRENCY}", "value": value,
            "rounds": ratios, "detail": detail if len(runs) == 1 else f"mean of rounds {ratios}: {detail}",
            "met": value is not None and value >= THROUGHPUT_TARGET}
    idle_submits = {**results["idle"]["submit"], "count": results["idle"]["submitted"]}
    for name, submits in (("busy", results["steady_submit_all_rounds"]), ("idle", idle_submits)):
        p99 = submits["p99_ms"]
        targets[f"submit_p99_{name}"] = {
            "goal": f"<= {SUBMIT_P99_TARGET_MS:g} ms", "value": p99,
            "detail": f"p50 {submits['p50_ms']} ms over {submits['count']} submits",
            "met": p99 is not None and p99 <= SUBMIT_P99_TARGET_MS}
    once = results["exactly_once"]
    targets["exactly_once"] = {
        "goal": "every job succeeded, one result each, counter and Redis agree", "value": once["with_result"],
        "detail": f"{once['with_result']} results of {once['submitted']} jobs, statuses {once['statuses']}, "
                  f"counter {once['server_succeeded_counter']}, pending {once['redis_pending_entries']}",
        "met": once["met"]}
    return targets


# ---- the run -----------------------------------------------------------------------------------------


def measure(server: Child, redis: RedisServer, args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    model = args.model
    requests = requests_for(model, args.model)
    jobs = [(path.replace(":predict", ":submit"), body, headers) for path, body, headers in requests]
    references = []
    for path, body, headers in requests:
        response = httpx.post(server.url + path, content=body, headers=headers, timeout=120, trust_env=False)
        response.raise_for_status()
        references.append(response.json())

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        # The load generator's own full collections walk its whole heap (httpx, the references: pauses of
        # 25-46 ms measured here) and would land in the submit latencies it measures; the server does the
        # same for its start-up heap (`predictors.server.app.freeze_startup_heap`).
        gc.collect()
        gc.freeze()
        await warm_up(server.url, requests, p)

        async def sync(when: str) -> dict[str, Any]:
            say(f"sync {when}: closed loop at c = {SYNC_CONCURRENCY} for {p['sync_seconds']} s")
            return await sync_saturation(server.url, requests, p)

        out["sync"] = await sync("before the burst")
        count = args.jobs or min(MAX_JOBS, max(p["burst_min_jobs"],
                                               round(out["sync"]["throughput_rps"] * p["burst_seconds"])))
        before = out["sync"]
        rounds = []
        for number in range(1, p["rounds"] + 1):
            say(f"round {number} of {p['rounds']}: burst of {count} jobs from {SUBMITTERS} submitters")
            this: dict[str, Any] = {"burst": await burst(server.url, jobs, count)}
            this["sync_between"] = await sync("between burst and steady")
            say(f"round {number} of {p['rounds']}: steady, backlog ~{STEADY_BACKLOG} for {p['steady_seconds']} s")
            this["steady"] = await steady(server.url, jobs, p["steady_seconds"], STEADY_BACKLOG)
            this["sync_after"] = await sync("after steady")
            this["burst"]["sync_reference"] = sync_reference(before, this["sync_between"])
            this["steady"]["sync_reference"] = sync_reference(this["sync_between"], this["sync_after"])
            before = this["sync_after"]
            rounds.append(this)
        out.update(rounds[0])  # the first round under the scenarios' own names, the others after it
        out["more_rounds"] = rounds[1:]
        say(f"idle: {p['idle_submits']} submits, one at a time")
        out["idle"] = await idle(server.url, jobs, p["idle_submits"])
        return out

    results = asyncio.run(run())
    scenarios = [*every_round(results, "burst"), *every_round(results, "steady"), results["idle"]]
    # the busy submit latencies of every round together: more samples behind the p99
    busy = [job.latency for steady_run in every_round(results, "steady") for job in steady_run["ledger"].submitted]
    results["steady_submit_all_rounds"] = {**latency_summary(busy), "count": len(busy)}
    ledgers = [scenario.pop("ledger") for scenario in scenarios]
    results["exactly_once"] = exactly_once(ledgers, references, server, model, redis)
    results["targets"] = judge(results)
    return results


def render(r: dict[str, Any]) -> str:
    parts = section_header("asynchronous jobs vs synchronous", r,
                           f"allocator={r['memory_allocator']}  redis {r['redis_version']}")
    rows = []
    phases = [("sync", "c=16, first", r["sync"])]
    for number, this in enumerate([r, *r["more_rounds"]], start=1):
        phases += [("burst", f"{this['burst']['submitters']} submitters, back to back (round {number})", this["burst"]),
                   ("sync_between", "c=16, between", this["sync_between"]),
                   ("steady", f"backlog ~{this['steady']['backlog']} (round {number})", this["steady"]),
                   ("sync_after", "c=16, after", this["sync_after"])]
    for name, how, s in [*phases, ("idle", "one at a time", r["idle"])]:
        if name.startswith("sync"):
            rows.append(["sync :predict", how, s["ok"], s["elapsed_s"], s["throughput_rps"], "-", "-", "-"])
            continue
        rows.append([f"jobs {name}", how, s["succeeded"], s.get("seconds", "-"), s.get("throughput_jobs_per_s", "-"),
                     s["submit"]["p50_ms"], s["submit"]["p99_ms"], s["job_total"]["p50_ms"]])
    parts.append("\n" + _table(["scenario", "load", "done", "seconds", "items/s", "submit p50 ms",
                                "submit p99 ms", "job p50 ms"], rows))
    parts.append(f"\nburst: {r['burst']['not_taken_when_submitting_ended']} of {r['burst']['jobs']} jobs not yet "
                 f"taken by the worker when the last submit left ({r['burst']['submitting_s']} s); exactly once: "
                 f"{r['exactly_once']['matching_sync_answer']} results equal to the synchronous answer")
    target_rows = [[name, t["goal"], _f(t["value"], 3), "met" if t["met"] else "MISSED", t["detail"]]
                   for name, t in r["targets"].items()]
    parts.append("\n" + _table(["target", "goal", "measured", "verdict", "detail"], target_rows))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = chosen_profile(args, PROFILES)
    stamp, env, began, results = open_run(args, "jobs", argv)
    results["settings"] = {**p, "sync_concurrency": SYNC_CONCURRENCY, "submitters": SUBMITTERS,
                           "steady_backlog": STEADY_BACKLOG, "polling": asdict(Polling()),
                           "long_poll_seconds": LONG_POLL_SECONDS,
                           "max_batch_size": default("max_batch_size"), "max_latency_ms": default("max_latency_ms"),
                           "max_queue": default("max_queue")}
    repository = write_variants(args, env, {args.model: {}})  # the server's batching defaults
    with tempfile.TemporaryDirectory(prefix="bench-jobs-redis-") as directory:
        redis = RedisServer(Path(directory)).start()
        try:
            with contextlib.closing(redis.client()) as client:
                results["redis_version"] = client.info("server")["redis_version"]
            say(f"server on {args.model}, jobs on redis-server {results['redis_version']} (port {redis.port})")
            server = serve(repository, [args.model], args, env, "jobs",
                           ["--jobs-redis-url", redis.url, "--jobs-consumer-name", "bench"])
            try:
                results["memory_allocator"] = server.memory_allocator()
                results.update(measure(server, redis, args, p))
                results["server_alive_at_end"] = server.alive()
            finally:
                results["server_exit_code"] = server.stop()
        finally:
            results["redis_exit_code"] = redis.stop()
            if redis.log_path.exists():  # the temporary directory goes; its log stays with the run's
                shutil.copy(redis.log_path, args.log_dir / "redis.log")
    return publish(results, began, args.log_dir, args.out_dir / f"jobs-{stamp}.json", render)


if __name__ == "__main__":
    sys.exit(main())
