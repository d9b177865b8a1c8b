"""Smoke run of the allocator benchmark (`python -m bench allocator --smoke --model tiny`): two real server
processes, one per `--memory-allocator`, alternating closed loops, the page-fault and memory readings, end to
end in its own process.

Plumbing only: half-second segments of a near-zero model say nothing about which allocator is faster (the
ratio is checked for shape, not direction). What must hold on any machine: each server runs on the
allocator it was started with, read from its own /proc maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bench_smoke import _check_load_row, _non_negative_numbers, run_bench


def test_the_allocator_benchmark_compares_two_servers_segment_by_segment(tmp_path: Path) -> None:
    report = run_bench(tmp_path, "allocator", "--smoke", "--model", "tiny")
    _non_negative_numbers({k: v for k, v in report.items() if not k.startswith("_")})
    assert report["profile"] == "smoke" and report["model"] == "tiny"
    assert report["memory_allocators"] == {"system": "system", "jemalloc": "jemalloc"}
    segments = report["segments"]
    assert set(segments) == {"system", "jemalloc"} and len(segments["system"]) == len(segments["jemalloc"]) == 2
    for runs in segments.values():
        for segment in runs:
            _check_load_row(segment)
            assert 0 <= segment["kernel_share_of_cpu"] <= 1 and segment["resident_mb"] > 0
    for name, summary in report["summary"].items():
        rates = [segment["throughput_rps"] for segment in segments[name]]
        assert summary["items_per_s_min"] == min(rates) and summary["items_per_s_max"] == max(rates)
        assert summary["items_per_s_mean"] == pytest.approx(sum(rates) / len(rates), abs=1e-3)
        assert list(report["idle_resident_mb"][name]) == ["0.5"]
    pairs = report["jemalloc_over_system"]["pairs"]
    assert pairs == [pytest.approx(j["throughput_rps"] / s["throughput_rps"], abs=1e-3)
                     for s, j in zip(segments["system"], segments["jemalloc"], strict=True)]
    assert report["server_exit_codes"] == {"system": 0, "jemalloc": 0}
    assert "jemalloc / system, segment by segment" in report["_stdout"]
