"""The hardware side of the benchmark's efficiency ratios: FLOP counting, the peak's arithmetic, and the
per-model report's parsing of the server's own start-up numbers."""

from __future__ import annotations

import pytest
import torch

from bench import hardware, permodel


class KnownNet(torch.nn.Module):
    """conv 3->8 (3x3, pad 1) on 6x6, then linear 8->5 on the pooled features: FLOPs known by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_flops_of_a_known_network_are_exact() -> None:
    net = KnownNet().eval()
    batch = 2
    total, per_op = hardware.count_flops(lambda: net(torch.zeros(batch, 3, 6, 6)))
    # conv: every output element (2 x 8 x 6 x 6) is a dot product of 3 x 3 x 3 = 27 multiply-adds
    conv = 2 * (batch * 8 * 6 * 6) * 27
    # linear: [2, 8] x [8, 5]; the bias add, relu and mean are element-wise: not counted
    linear = 2 * batch * 5 * 8
    assert per_op == {"aten.convolution": conv, "aten.addmm": linear}
    assert total == conv + linear == 31_264


def test_flops_count_only_the_calling_threads_work_inside_the_call() -> None:
    a = torch.ones(4, 6)
    b = torch.ones(6, 3)
    a @ b  # outside: not counted
    total, per_op = hardware.count_flops(lambda: (a @ b, a + 1))
    assert total == hardware.mm_flops(4, 3, 6) == 144
    assert per_op == {"aten.mm": 144}


def test_peak_arithmetic() -> None:
    assert hardware.mm_flops(2, 3, 4) == 48
    assert hardware.mm_flops(2048, 2048, 2048) == 2 * 2048**3
    assert hardware.gflops_per_s(2 * 2048**3, 0.1) == pytest.approx(171.79869184)
    assert hardware.efficiency(20.6e9, 5.2, 200.0) == {"gflops": 107.1, "fraction_of_peak": 0.5356}
    assert hardware.efficiency(None, 5.2, 200.0) == {"gflops": None, "fraction_of_peak": None}
    assert hardware.efficiency(1e9, 1.0, None) == {"gflops": 1.0, "fraction_of_peak": None}


def test_measure_peak_reports_the_best_repeat() -> None:
    peak = hardware.measure_peak(size=256, repeats=3)
    assert peak["flops_per_call"] == 2 * 256**3 and peak["repeats"] == 3
    assert 0 < peak["best_s"] <= peak["median_s"]
    # both numbers are rounded in the report (best_s to the microsecond)
    assert peak["peak_gflops"] == pytest.approx(2 * 256**3 / peak["best_s"] / 1e9, rel=0.02)
    assert peak["device"] == "cpu" and peak["torch_num_threads"] == torch.get_num_threads()


def test_server_ready_line_and_load_metric_are_parsed() -> None:
    log = (
        "2026-11-29 INFO model other ready on cpu in 9.00 s (weights 8.00 s, warm-up 1.00 s)\n"
        "2026-11-29 INFO model model-batch ready on cpu in 3.21 s (weights 2.50 s, warm-up 0.71 s)\n"
    )
    assert permodel.parse_ready_line(log, "model-batch") == {"total_s": 3.21, "weights_s": 2.5, "warmup_s": 0.71}
    assert permodel.parse_ready_line(log, "missing") is None
    exposition = (
        "# HELP predictors_model_load_seconds Time to load and warm up the model.\n"
        "# TYPE predictors_model_load_seconds gauge\n"
        'predictors_model_load_seconds{model="model-batch"} 3.2134\n'
    )
    assert permodel.parse_load_metric(exposition, "model-batch") == 3.2134
    assert permodel.parse_load_metric(exposition, "tiny") is None


def test_batch_sizes() -> None:
    assert permodel.batch_sizes(8) == [1, 2, 4, 8]
    assert permodel.batch_sizes(6) == [1, 2, 4, 6]
    assert permodel.batch_sizes(1) == [1]
    assert permodel.batch_sizes(64) == [1, 2, 4, 8, 16, 32, 64]


def _row(concurrency: int, rps: float) -> dict:
    return {"concurrency": concurrency, "throughput_rps": rps, "p50_ms": 10.0, "p99_ms": 20.0}


def test_derive_saturation_memory_and_efficiency() -> None:
    inprocess = {
        "predictor": "general-recognition",
        "payload": {"kind": "general-recognition", "image_size": [320, 240], "texts": {}},
        "batches": [{"batch_size": 1, "items_per_s": 4.0}, {"batch_size": 8, "items_per_s": 5.0}],
        "flops": {"per_item": 21e9, "forward_per_item": 20e9, "prepare_per_item": 1e9},
        "load_added_rss_mb": 300.0,
    }
    startup = {
        "process_start_to_ready_s": 12.0,
        "load_seconds_metric": 4.0,
        "server_log": {"total_s": 4.0, "weights_s": 3.0, "warmup_s": 1.0},
        "rss_ready_mb": {"VmRSS": 1400.0, "VmHWM": 1500.0},
    }
    servers = {
        "batching_on": {"startup": startup, "rss_end_mb": {"VmRSS": 1600.0, "VmHWM": 1700.0},
                        "rows": [_row(1, 3.0), _row(4, 4.6), _row(16, 4.5)]},
        "batching_off": {"startup": startup, "rss_end_mb": {}, "rows": [_row(1, 3.0), _row(4, 3.5), _row(16, 3.0)]},
    }
    idle = {"rss_ready_mb": {"VmRSS": 900.0}}
    s = permodel.derive(inprocess, servers, idle, peak_gflops=200.0)["summary"]
    assert s["raw_items_per_s"] == 5.0 and s["raw_batch_size"] == 8
    assert s["server_best_rps"] == 4.6 and s["server_best_concurrency"] == 4
    assert s["server_best_mode"] == "batching_on"
    assert s["saturation_vs_raw"] == 0.92 and s["saturation_met"] is True
    assert s["batching_on_off_at"] == 16 and s["batching_on_off_throughput"] == 1.5
    assert s["model_rss_mb"] == 500.0 and s["peak_rss_after_load_mb"] == 1700.0
    assert (s["weights_s"], s["warmup_s"]) == (3.0, 1.0)
    assert s["raw_efficiency"] == {"gflops": 100.0, "fraction_of_peak": 0.5}
    assert s["server_efficiency"] == {"gflops": 96.6, "fraction_of_peak": 0.483}


def test_a_model_fastest_unbatched_is_judged_at_its_best_batch_and_best_server_setting() -> None:
    """Measured on this CPU: visual entailment 10.6 items/s at batch 1, 4.85 at batch 8; its server
    faster with batching off at c = 16. The ceiling is the best batch, the server its best setting."""
    inprocess = {"predictor": "visual-entailment", "payload": {}, "batches": [
        {"batch_size": 1, "items_per_s": 10.6}, {"batch_size": 8, "items_per_s": 4.85}],
        "flops": {}, "load_added_rss_mb": 1.0}
    startup = {"process_start_to_ready_s": 6.0, "load_seconds_metric": 4.0, "server_log": None,
               "rss_ready_mb": {"VmRSS": 1200.0}}
    servers = {
        "batching_on": {"startup": startup, "rss_end_mb": {}, "rows": [_row(1, 9.0), _row(16, 5.0)]},
        "batching_off": {"startup": startup, "rss_end_mb": {}, "rows": [_row(1, 8.5), _row(16, 9.8)]},
    }
    s = permodel.derive(inprocess, servers, {"rss_ready_mb": {"VmRSS": 900.0}}, peak_gflops=None)["summary"]
    assert (s["raw_items_per_s"], s["raw_batch_size"]) == (10.6, 1)
    assert (s["server_best_mode"], s["server_best_rps"], s["server_best_concurrency"]) == ("batching_off", 9.8, 16)
    assert s["saturation_vs_raw"] == 0.925 and s["saturation_met"] is True
    assert s["batching_on_off_throughput"] == 0.51


def test_flops_on_a_helper_thread_are_counted_too() -> None:
    from concurrent.futures import ThreadPoolExecutor

    a, b = torch.ones(4, 6), torch.ones(6, 3)
    with ThreadPoolExecutor(1) as device_thread:
        total, per_op = hardware.count_flops(lambda: device_thread.submit(torch.mm, a, b).result(), device_thread)
        assert total == 144 and per_op == {"aten.mm": 144}
        # without the helper the other thread's work is invisible (why the helper is needed)
        assert hardware.count_flops(lambda: device_thread.submit(torch.mm, a, b).result())[0] == 0
        # and the helper's counter is gone afterwards
        assert hardware.count_flops(lambda: None, device_thread)[0] == 0


def test_stage_clock_times_wrapped_methods_and_module_forwards() -> None:
    import time as clock_time

    from bench.stages import StageClock

    clock = StageClock()
    slow = clock.wrap("sleep", lambda seconds: clock_time.sleep(seconds) or "done")
    assert slow(0.02) == "done" and slow(0.01) == "done"
    net = torch.nn.Linear(2, 2)
    clock.hook_module("linear", net)
    net(torch.zeros(1, 2))
    assert clock.calls == {"sleep": 2, "linear": 1}
    assert 0.03 <= clock.wall["sleep"] < 1.0 and 0 < clock.wall["linear"] < 1.0
