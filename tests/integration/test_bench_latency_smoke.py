"""Smoke run of the latency-target comparison (`python -m bench latency --smoke --model tiny`): the static
sweep and a derived target on two real server processes, every scenario (c = 4 and 16, the load step
with the chosen batch size sampled from /metrics, the open loop) and the verdicts, end to end.

Plumbing only: seconds-long runs of a near-zero model on a shared machine say nothing about the policy
(tests/unit/test_batching_target.py checks that, on simulated time), so the targets are not asserted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.latency import level
from tests.integration.test_bench_smoke import _check_load_row, run_bench


def test_the_latency_comparison_runs_every_scenario_and_judges_each_target(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "latency", "--smoke", "--model", "tiny")
    comparison = report["comparison"]
    statics, targets = comparison["static"], comparison["targets"]
    assert comparison["default_static"] == "static-b8-l5" and set(statics) == {"static-b8-l5", "static-b1-l0"}
    assert comparison["best_static"] in statics and comparison["targets_derived"] is True
    best_p99 = level(statics[comparison["best_static"]], 16)["p99_ms"]
    loose, tight = (targets[name]["latency_target_ms"] for name in targets)
    assert loose >= best_p99 and tight == pytest.approx(math.ceil(loose / 2 / 10) * 10, abs=10)
    for name, target in targets.items():
        assert name == f"target-{target['latency_target_ms']:g}ms"
        assert target["max_queue_delay_ms"] == target["latency_target_ms"]  # refusal on
        assert target["max_batch_size"] == 8  # the largest of the sweep: the hard upper bound
    for contender in (*statics.values(), *targets.values()):
        assert [row["concurrency"] for row in contender["levels"]] == [4, 16]
        for row in contender["levels"]:
            assert row["requests"] == row["ok"] + row["errors"] and row["ok"] > 0
    for contender in (statics[comparison["default_static"]], statics[comparison["best_static"]], *targets.values()):
        step = contender["step"]
        assert [phase["concurrency"] for phase in step["phases"]] == [2, 16, 2]
        assert sum(phase["requests"] for phase in step["phases"]) == step["overall"]["requests"]
        assert step["chosen_batch_size"], "the gauge predictors_batch_size_target_items was never read"
        assert all(1 <= size <= 8 for _, size in step["chosen_batch_size"])
        _check_load_row(step["overall"])
        assert contender["open_loop"]["offered_rps"] > 0 and contender["open_loop"]["requests"] > 0
    for name in targets:
        verdict = comparison["verdicts"][name]
        assert isinstance(verdict["p99_met"], bool) and isinstance(verdict["throughput_met"], bool)
        assert [t["scenario"] for t in verdict["throughput_vs_best_static"]] == ["c=4", "c=16", "step"]
        assert len(verdict["p99_within_target"]) == 2 + 3 + 1
        assert f"{name}: p99 <=" in report["_stdout"]
    for key in ("server_1_exit_code", "server_2_exit_code"):
        assert comparison[key] == 0
    assert comparison["server_1_alive_at_end"] and comparison["server_2_alive_at_end"]
    assert "step 2->16->2" in report["_stdout"]
