"""Smoke run of the benchmark suite (`python -m bench --smoke --model tiny`): every section runs end to
end against real child processes and the JSON report is complete and self-consistent.

It checks plumbing, not performance: the targets are not asserted (the numbers of a seconds-long run
on a shared machine mean nothing). The suite runs in its own process, as a user would run it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
#: ~30 s on a quiet 2-core machine; generous because the machine running the tests is often shared
TIMEOUT_S = 240


def _non_negative_numbers(value: Any, where: str = "$") -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        assert value >= 0, f"{where} = {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("load_average"):
                continue
            _non_negative_numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _non_negative_numbers(item, f"{where}[{i}]")


def _check_load_row(row: dict[str, Any]) -> None:
    assert row["requests"] == row["ok"] + row["errors"]
    assert sum(row["statuses"].values()) == row["requests"]
    assert row["statuses"].get("200", 0) == row["ok"]
    assert row["ok"] > 0
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["throughput_rps"] > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--model",
            "tiny",
            "--work-dir",
            str(work / "work"),
            "--out-dir",
            str(work / "results"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the suite stops its servers on SIGTERM
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"the smoke run took more than {TIMEOUT_S} s:\n{stderr[-5000:]}")
    elapsed = time.monotonic() - started
    assert process.returncode == 0, stderr[-5000:]
    (path,) = (work / "results").glob("*.json")
    data = json.loads(path.read_text())
    data["_stdout"], data["_elapsed"] = stdout, elapsed
    return data


def test_every_section_is_reported(report: dict[str, Any]) -> None:
    for key in ("environment", "raw", "server", "baseline", "overhead", "overload", "targets", "settings"):
        assert key in report, key
    assert set(report["server"]["modes"]) == {"batching_on", "batching_off"}
    assert set(report["targets"]) == {
        "saturation_vs_raw",
        "batching_speedup",
        "vs_baseline",
        "framework_overhead",
        "overload",
    }
    for target in report["targets"].values():
        assert isinstance(target["met"], bool)
    for heading in ("1. raw", "2./3. servers", "4. framework overhead", "5. overload", "targets"):
        assert heading in report["_stdout"]
    assert report["environment"]["torch_num_threads"] >= 1


def test_numbers_are_sane(report: dict[str, Any]) -> None:
    body = {k: v for k, v in report.items() if not k.startswith("_")}
    _non_negative_numbers(body)
    batches = report["raw"]["ceiling"]["batches"]
    assert [b["batch_size"] for b in batches] == [1, 2, 4, 8]
    assert all(b["items_per_s"] > 0 and b["iterations"] >= 1 for b in batches)
    for mode in report["server"]["modes"].values():
        assert [r["concurrency"] for r in mode["rows"]] == report["server"]["levels"]
        for row in mode["rows"]:
            _check_load_row(row)
            assert row["errors"] == 0
    for row in report["baseline"]["rows"]:
        _check_load_row(row)
        assert row["errors"] == 0
    overhead = report["overhead"]
    for name in ("v2_binary", "v2_json", "v1", "v2_binary_batching_on"):
        assert overhead["server"][name]["errors"] == 0
        assert overhead["server"][name]["p50_ms"] > 0
        assert overhead["added_p50_ms"][name]["server_p50_ms"] == overhead["server"][name]["p50_ms"]
    assert overhead["echo_v2_binary"]["p50_ms"] > 0
    assert {p["model"] for p in overhead["in_process_path"]} == {"tiny", "tiny-batch"}


def test_overload_accounting(report: dict[str, Any]) -> None:
    overload = report["overload"]
    loaded = overload["overload"]
    assert loaded["requests"] + loaded["skipped_by_client"] >= 1
    assert loaded["requests"] == loaded["ok"] + loaded["errors"]
    assert sum(loaded["statuses"].values()) == loaded["requests"]
    shares = (overload["share_503"] or 0) + (overload["share_504"] or 0)
    assert 0 <= shares <= 1
    assert overload["other_5xx"] == 0
    assert overload["healthy_after"] is True
    assert overload["health"]["probes"] >= 1
    assert report["server_exit_code"] == 0
