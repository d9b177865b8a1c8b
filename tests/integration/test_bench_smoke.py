"""Smoke runs of the benchmark suite: `python -m bench --smoke --model tiny` (every section, including
the per-model one, end to end against real child processes), one `--per-model-only` run per real model
(its demo directory, its own payload), and `--profile gpu` on the CPU with the tiny model (plumbing of
the GPU profile: both precisions, FLOPs, peaks). The JSON reports are complete and self-consistent.

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

from predictors.precision import read_cpu_bf16_support

REPO = Path(__file__).resolve().parents[2]
#: ~30 s on a quiet 2-core machine; generous because the machine running the tests is often shared
TIMEOUT_S = 240


RSS_DIFFERENCES = frozenset({"model_rss_mb", "load_added_rss_mb", "in_process_load_added_rss_mb"})


def _non_negative_numbers(value: Any, where: str = "$") -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        assert value >= 0, f"{where} = {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            # load averages, and memory a model adds (the difference of two processes' RSS: within the
            # allocator's noise of 0 for the tiny model, so either sign), are not counts or durations
            if key.startswith("load_average") or key in RSS_DIFFERENCES:
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


def run_bench(work: Path, *arguments: str) -> dict[str, Any]:
    """`python -m bench ARGUMENTS` in its own process; its JSON report (plus stdout and wall time)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            *arguments,
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


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_bench(tmp_path_factory.mktemp("bench"), "--smoke", "--model", "tiny")


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


def check_model_section(model: dict[str, Any]) -> None:
    """One model's per-model section: ceiling, both servers, start-up split, memory, FLOPs, ratios."""
    assert [b["batch_size"] for b in model["raw"]["batches"]] == [1]
    assert model["raw"]["batches"][0]["items_per_s"] > 0
    for mode in ("batching_on", "batching_off"):
        server = model["server"][mode]
        assert server["alive_at_end"] is True and server["exit_code"] == 0
        for row in server["rows"]:
            _check_load_row(row)
            assert row["errors"] == 0
        startup = server["startup"]
        log = startup["server_log"]
        assert log is not None, "the server did not log its load / warm-up split"
        assert log["weights_s"] >= 0 and log["warmup_s"] >= 0
        assert log["total_s"] == pytest.approx(log["weights_s"] + log["warmup_s"], abs=0.02)
        assert startup["load_seconds_metric"] == pytest.approx(log["total_s"], abs=0.01)
        assert startup["process_start_to_ready_s"] >= log["total_s"]
        assert startup["rss_ready_mb"]["VmRSS"] > 0
    summary = model["summary"]
    assert summary["saturation_vs_raw"] == pytest.approx(
        summary["server_best_rps"] / summary["raw_items_per_s"], abs=0.001
    )
    assert summary["saturation_met"] == (summary["saturation_vs_raw"] >= 0.9)
    assert summary["model_rss_mb"] == pytest.approx(summary["server_rss_mb"] - summary["idle_server_rss_mb"], abs=0.2)
    assert summary["forward_flops_per_item"] > 0
    assert summary["flops_per_item"] == summary["forward_flops_per_item"] + summary["prepare_flops_per_item"]
    for key in ("raw_efficiency", "server_efficiency"):
        assert summary[key]["gflops"] > 0 and summary[key]["fraction_of_peak"] > 0


def test_per_model_section_of_the_full_smoke_run(report: dict[str, Any]) -> None:
    per_model = report["per_model"]
    assert per_model["peak"]["peak_gflops"] > 0
    assert set(per_model["models"]) == {"tiny"}
    check_model_section(per_model["models"]["tiny"])
    assert "summary across models" in report["_stdout"]


@pytest.mark.parametrize(
    "model", ["image-classification", "visual-entailment", "face-enhancement", "general-recognition"]
)
def test_per_model_smoke_run(model: str, tmp_path: Path) -> None:
    data = run_bench(tmp_path, "--smoke", "--per-model-only", "--model", model)
    assert "raw" not in data and "overload" not in data  # the server study was skipped
    assert set(data["per_model"]["models"]) == {model}
    section = data["per_model"]["models"][model]
    assert section["predictor"] == model and section["payload"]["kind"] == model
    check_model_section(section)
    assert section["summary"]["model_rss_mb"] > 10, "a real model's weights must show in the server's memory"
    assert f"6.{model}" in data["_stdout"]


def test_gpu_profile_plumbing_on_the_cpu(tmp_path: Path) -> None:
    data = run_bench(tmp_path, "--profile", "gpu", "--device", "cpu", "--model", "tiny", "--gpu-max-batch", "2")
    gpu = data["gpu"]
    assert gpu["precisions"] == ["fp32", "bf16"]  # fp16 is refused off CUDA
    assert {p: gpu["peaks"][p]["peak_gflops"] > 0 for p in gpu["precisions"]} == {"fp32": True, "bf16": True}
    runs = gpu["models"]["tiny"]["precisions"]
    native = read_cpu_bf16_support().native
    for precision in ("fp32", "bf16"):
        assert runs[precision]["precision"] == precision
        assert runs[precision]["effective_precision"] == ("bf16" if precision == "bf16" and native else "fp32")
        assert [b["batch_size"] for b in runs[precision]["batches"]] == [1, 2]
        assert all(b["items_per_s"] > 0 and b["gflops"] > 0 for b in runs[precision]["batches"])
    assert gpu["models"]["tiny"]["forward_flops_per_item"] == 2 * 3 * 4  # the tiny model's linear 3 -> 4
