"""Smoke run of the jobs benchmark (`python -m bench jobs --smoke --model tiny`): a real redis-server and a
real server process, every scenario (sync closed loop, burst, steady backlog, idle submits), the
exactly-once check and the verdicts, end to end in its own process.

Plumbing only: seconds-long runs of a near-zero model on a shared machine say nothing about the targets
(their verdicts are checked for shape, not asserted met), except exactly once, which must hold on any
machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bench_smoke import _check_load_row, _non_negative_numbers, run_bench

TARGETS = {"throughput_burst", "throughput_steady", "submit_p99_busy", "submit_p99_idle", "exactly_once"}


def test_the_jobs_benchmark_runs_every_scenario_and_every_job_exactly_once(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "jobs", "--smoke", "--model", "tiny")
    _non_negative_numbers({k: v for k, v in report.items() if not k.startswith("_")})
    assert report["profile"] == "smoke" and report["model"] == "tiny" and report["redis_version"]
    assert report["memory_allocator"] == "jemalloc"  # the server as shipped (libjemalloc2: make test installs it)
    _check_load_row(report["sync"])
    assert report["sync"]["concurrency"] == 16

    idle = report["idle"]
    rounds = [report, *report["more_rounds"]]
    assert len(rounds) == 2  # the smoke profile runs the job scenarios twice, as the full one does
    for this in rounds:
        burst, steady = this["burst"], this["steady"]
        assert burst["submitted"] == burst["succeeded"] == burst["jobs"] >= 40 and burst["refused"] == {}
        assert burst["seconds"] > burst["submitting_s"] >= 0 and burst["throughput_jobs_per_s"] > 0
        assert steady["submitted"] == steady["succeeded"] > 0 and steady["backlog"] == 32
        assert steady["seconds"] > steady["submitting_s"] >= steady["backlog_seconds"] * 0.5
        assert steady["finished_while_submitting"] <= steady["submitted"]
        for run in ("sync_between", "sync_after"):
            _check_load_row(this[run])
            assert this[run]["concurrency"] == 16
        for scenario in (burst, steady):
            # `seconds` is rounded to the millisecond in the report
            assert scenario["throughput_jobs_per_s"] == pytest.approx(scenario["succeeded"] / scenario["seconds"],
                                                                      rel=1e-2)
    assert idle["submitted"] == idle["succeeded"] == 8
    for scenario in (*(this[name] for this in rounds for name in ("burst", "steady")), idle):
        submit = scenario["submit"]
        assert 0 < submit["p50_ms"] <= submit["p99_ms"] <= submit["max_ms"]
        assert scenario["job_queued"]["p50_ms"] <= scenario["job_total"]["p50_ms"]

    once = report["exactly_once"]
    submitted = sum(this[name]["submitted"] for this in rounds for name in ("burst", "steady")) + idle["submitted"]
    assert once["submitted"] == once["distinct_ids"] == once["with_result"] == submitted
    assert once["statuses"] == {"succeeded": submitted} and once["refused"] == 0
    assert once["server_succeeded_counter"] == submitted and once["redis_pending_entries"] == 0
    assert once["matching_sync_answer"] == submitted and once["met"] is True

    targets = report["targets"]
    assert set(targets) == TARGETS and targets["exactly_once"]["met"] is True
    # each job scenario against the mean of the sync runs just before and after it (the first round's burst:
    # the first sync run; the second round's: the first round's last)
    before = [report["sync"], report["sync_after"]]
    for this, previous in zip(rounds, before, strict=True):
        for name, runs in (("burst", (previous, this["sync_between"])), ("steady", (this["sync_between"],
                                                                                   this["sync_after"]))):
            rates = [run["throughput_rps"] for run in runs]
            assert this[name]["sync_reference"] == {"runs_rps": rates, "throughput_rps": round(sum(rates) / 2, 3)}
    # a throughput target: the mean of the rounds' ratios
    for name in ("burst", "steady"):
        ratios = [round(this[name]["throughput_jobs_per_s"] / this[name]["sync_reference"]["throughput_rps"], 3)
                  for this in rounds]
        assert targets[f"throughput_{name}"]["rounds"] == ratios
        assert targets[f"throughput_{name}"]["value"] == pytest.approx(sum(ratios) / 2, abs=1e-3)
    # the busy p99: over the steady submits of both rounds
    busy = report["steady_submit_all_rounds"]
    assert busy["count"] == sum(this["steady"]["submitted"] for this in rounds)
    assert min(this["steady"]["submit"]["p50_ms"] for this in rounds) <= busy["p99_ms"] \
        <= max(this["steady"]["submit"]["max_ms"] for this in rounds)
    assert targets["submit_p99_busy"]["value"] == busy["p99_ms"]
    assert targets["submit_p99_idle"]["value"] == idle["submit"]["p99_ms"]
    for name, target in targets.items():
        assert isinstance(target["met"], bool)
        assert f"{name} " in report["_stdout"] and ("met" if target["met"] else "MISSED") in report["_stdout"]
    assert report["server_alive_at_end"] and report["server_exit_code"] == 0 and report["redis_exit_code"] == 0
