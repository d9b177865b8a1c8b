"""The benchmark suite's building blocks: payloads, statistics and the bounded load generators."""

from __future__ import annotations

import asyncio
import importlib
import json
import struct
import sys
from pathlib import Path

import pytest

from bench import common, loadgen
from devtools.images import sample_jpeg
from devtools.procs import free_port, start


def test_percentile_interpolates() -> None:
    assert common.percentile([], 50) is None
    assert common.percentile([3.0], 99) == 3.0
    assert common.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert common.percentile(list(range(101)), 99) == 99
    summary = common.latency_summary([0.001, 0.002, 0.003])
    assert summary["p50_ms"] == 2.0 and summary["max_ms"] == 3.0


def test_v2_binary_request_layout() -> None:
    image = sample_jpeg(1, (16, 16))
    path, body, headers = common.v2_binary_request("tiny", image)
    head_length = int(headers["inference-header-content-length"])
    header = json.loads(body[:head_length])
    assert path == "/v2/models/tiny/infer"
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(image) + 4
    assert struct.unpack_from("<I", body, head_length)[0] == len(image)
    assert body[head_length + 4 :] == image


def test_parse_v2_binary_response() -> None:
    labels = struct.pack("<I", 3) + b"cat" + struct.pack("<I", 3) + b"dog"
    scores = struct.pack("<2f", 0.75, 0.25)
    head = json.dumps(
        {
            "outputs": [
                {
                    "name": "labels",
                    "datatype": "BYTES",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": len(labels)},
                },
                {
                    "name": "scores",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": len(scores)},
                },
            ]
        }
    ).encode()
    out = common.parse_v2_binary_response(head + labels + scores, len(head))
    assert out == {"labels": ["cat", "dog"], "scores": [0.75, 0.25]}


def test_load_only_on_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        loadgen.check_loopback("http://example.com:8080")
    loadgen.check_loopback("http://127.0.0.1:8080")


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    child = start(
        "echo",
        [sys.executable, "-m", "bench.echo_server", "--port", str(port)],
        port,
        tmp_path_factory.mktemp("echo"),
        {},
    )
    try:
        child.wait_ready(["/"], 60)
        yield child
    finally:
        child.stop()


def test_closed_loop_is_bounded_and_counts_add_up(echo) -> None:
    requests = [common.v2_binary_request("echo", b"x" * 100)]
    result = asyncio.run(
        loadgen.closed_loop(echo.url, requests, concurrency=4, duration=30.0, max_requests=40)
    )
    summary = result.summary()
    assert summary["requests"] == 40 == summary["ok"] and summary["errors"] == 0
    assert summary["statuses"] == {"200": 40}
    assert summary["throughput_rps"] > 0 and summary["p50_ms"] <= summary["p99_ms"]


def test_open_loop_and_health_probe(echo) -> None:
    requests = [common.v2_binary_request("echo", b"x" * 100)]

    async def run():
        stop = asyncio.Event()
        probe = asyncio.create_task(loadgen.probe_health(echo.url, stop, interval=0.1))
        result = await loadgen.open_loop(
            echo.url, requests, rate=50, duration=0.5, max_requests=20, max_outstanding=8
        )
        stop.set()
        return result, await probe

    result, health = asyncio.run(run())
    summary = result.summary()
    assert summary["requests"] + summary["skipped_by_client"] == 20
    assert summary["requests"] == summary["ok"]
    assert health["probes"] >= 1 and health["failures"] == 0


def test_results_directory_is_ignored() -> None:
    ignore = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()
    assert "bench/results/" in ignore


def test_bench_help_lists_every_suite(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import SUITES, main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert all(f"    {name}" in shown for name in SUITES)
    for module, _ in SUITES.values():  # every suite is a module with its own main(argv)
        assert callable(importlib.import_module(module).main)
