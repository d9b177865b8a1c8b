"""Prometheus metrics of the predictors (served on the REST port's ``/metrics`` next to KServe's own).

One `Metrics` object is made per server and passed to every model; tests pass their own registry.
KServe's ``request_{preprocess,predict,postprocess}_seconds{model_name}`` histograms stay as they are
(recorded by ``kserve.Model.__call__``); ours add counts, outcomes, queueing and the device.

Single process: the server runs one uvicorn worker per pod (torch models are not fork-safe and every
worker would hold its own copy of the weights; scale with pods), so the default registry is exact and
prometheus multiprocess mode is not needed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: a job waits in its queue: seconds to a day
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
#: a probability (top-1 score) or a quality score in [0, 1]: finer near both ends, where confident and doubtful
#: answers sit
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
#: faces found in one image
FACE_BUCKETS = (0, 1, 2, 3, 5, 10, 20)
#: how far back `predictors status` looks for "recent" latency
RECENT_WINDOW_SECONDS = 300.0


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        # Every metric is registered in `registry` (tests and the bench use their own); histograms of durations
        # share LATENCY_BUCKETS.
        counter = partial(Counter, registry=registry)
        gauge = partial(Gauge, registry=registry)
        seconds = partial(Histogram, buckets=LATENCY_BUCKETS, registry=registry)
        self.requests = counter(
            "predictors_requests_total",
            "Inference requests by protocol (v1, v2, grpc) and outcome code (OK or the error code).",
            ["model", "protocol", "code"])
        self.request_duration = seconds(
            "predictors_request_duration_seconds",
            "Inference request latency at the edge, from the request's arrival to its response.", ["model", "protocol"])
        self.stage_duration = seconds(
            "predictors_request_stage_duration_seconds",
            "Time a request spent per stage: preprocess (decode+prepare), queue (waiting for a batch), "
            "predict (forward passes), postprocess (finish+encode).", ["model", "stage"])
        self.in_flight = gauge("predictors_requests_in_flight", "Inference requests being served.", ["model"])
        self.forward_duration = seconds(
            "predictors_forward_duration_seconds",
            "Duration of one batched forward pass (with its OOM split/fallback retries).", ["model"])
        self._gpu = _GpuMemoryCollector()
        registry.register(self._gpu)
        self._recent: dict[str, _RecentLatency] = {}
        self._recent_lock = threading.Lock()
        self.oom_fallbacks = counter(
            "predictors_cuda_oom_fallbacks_total",
            "Forward passes that hit CUDA out-of-memory and were split ('split') or moved to the CPU "
            "('cpu_fallback').", ["model", "action"])
        self.poison_items = counter(
            "predictors_poison_items_total",
            "Items whose forward pass failed on their own with an unexpected error, found by retrying "
            "their failed batch in halves (their requests got INTERNAL_ERROR, their batch-mates answers).", ["model"])
        self.batch_size = Histogram("predictors_batch_size_items", "Items per forward pass.", ["model"],
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.batch_size_target = gauge(
            "predictors_batch_size_target_items",
            "Items the batcher chose for its latest forward pass: with latency_target_ms, the largest batch "
            "(at most max_batch_size and what waited) whose predicted end kept the oldest waiting item within "
            "the target; without, what waited up to max_batch_size.", ["model"])
        self.queue_depth = gauge("predictors_queue_depth_items", "Items waiting for a forward pass.", ["model"])
        self.queue_capacity = gauge(
            "predictors_queue_capacity_items",
            "Items the model's queue holds before requests are refused with 503 SERVICE_BUSY (max_queue).", ["model"])
        self.items = counter("predictors_items_processed_total", "Items that went through a forward pass.", ["model"])
        self.rejected = counter(
            "predictors_rejected_requests_total",
            "Requests refused before inference, by reason (SERVICE_BUSY, TIMEOUT).", ["model", "code"])
        self.model_ready = gauge("predictors_model_ready", "1 when the model is loaded and warmed up.", ["model"])
        self.load_seconds = gauge("predictors_model_load_seconds", "Time to load and warm up the model.", ["model"])
        self.device_info = gauge(
            "predictors_model_device_info", "The device a model runs on (value 1).", ["model", "device"])
        self.precision_info = gauge(
            "predictors_model_precision_info",
            "The precision a model's forward pass runs in (value 1), and the precision setting asked for: they "
            "differ where bf16 was asked for on a device without native bf16 (served in fp32).",
            ["model", "precision", "requested"])
        self.jobs = counter(
            "predictors_jobs_total",
            "Asynchronous jobs by the status this process gave them: queued (submitted here), succeeded and "
            "failed (run here; each job counted once, by the process whose outcome was written), cancelled.",
            ["model", "status"])
        self.jobs_backlog = gauge(
            "predictors_jobs_backlog_items",
            "Unfinished asynchronous jobs of the model in Redis (queued or running), as last read here.", ["model"])
        self.jobs_oldest_age = gauge(
            "predictors_jobs_oldest_age_seconds",
            "Age of the model's oldest unfinished asynchronous job in Redis (queued or running), as last read "
            "here; 0 when there is none.", ["model"])
        self.jobs_redis_available = gauge(
            "predictors_jobs_redis_available",
            "1 when this process' last call to the jobs' Redis succeeded, 0 while Redis is unavailable; per model "
            "whose jobs the process runs (absent with jobs off).", ["model"])
        self.job_duration = Histogram(
            "predictors_job_duration_seconds", "Asynchronous jobs from submission to their outcome (succeeded or "
            "failed).", ["model"], buckets=JOB_BUCKETS, registry=registry)
        self.jobs_reclaimed = counter(
            "predictors_jobs_reclaimed_total",
            "Job runs taken over from a process silent for jobs_visibility_timeout_seconds (died or hung).", ["model"])
        self.review_flags = counter(
            "predictors_results_needing_review_total",
            "Results whose quality signal fell below the model's review threshold.", ["model"])
        # What the answers look like (one observation per result of a request): a canary's answers are compared
        # with stable's on these (`predictors canary-analysis`, docs/release-safety.md).
        self.results = counter(
            "predictors_results_total", "Results answered (one per item of a successful request).", ["model"])
        self.answer_top_score = Histogram(
            "predictors_answer_top_score", "The top-1 score (largest probability) of each answer (classifiers, "
            "entailment).", ["model"], buckets=SCORE_BUCKETS, registry=registry)
        self.answer_quality = Histogram(
            "predictors_answer_quality_score", "The quality score of each result (face enhancement: 1 = the "
            "input's structure kept).", ["model"], buckets=SCORE_BUCKETS, registry=registry)
        self.answer_faces = Histogram(
            "predictors_answer_faces", "Faces found per image (face enhancement).", ["model"],
            buckets=FACE_BUCKETS, registry=registry)

    # ---- helpers used by the model and the edge ------------------------------------------------

    def model_loaded(self, model: str, device: str, seconds: float, max_queue: int) -> None:
        self.load_seconds.labels(model).set(seconds)
        self.queue_capacity.labels(model).set(max_queue)
        self.device_info.labels(model, device).set(1)
        self.model_ready.labels(model).set(1)
        if device.startswith("cuda"):
            self._gpu.devices.add(device)

    def answers_expected(self, model: str, top_score: bool, quality: bool, faces: bool, review: bool) -> None:
        """Create a model's answer series at 0 when it loads: Prometheus' ``increase()`` sees a series only from
        its first sample, so a series born at the first result would never count that result."""
        self.results.labels(model)
        for wanted, metric in ((top_score, self.answer_top_score), (quality, self.answer_quality),
                               (faces, self.answer_faces), (review, self.review_flags)):
            if wanted:
                metric.labels(model)

    def jobs_expected(self, model: str) -> None:
        """Create a model's job series at 0 when its job worker starts (as `answers_expected`: ``increase()``
        then counts the first jobs too)."""
        for status in ("queued", "succeeded", "failed", "cancelled"):
            self.jobs.labels(model, status)
        self.job_duration.labels(model)
        self.jobs_reclaimed.labels(model)

    def model_precision(self, model: str, requested: str, effective: str) -> None:
        self.precision_info.labels(model, effective, requested).set(1)

    def observe_request(self, model: str, protocol: str, code: str, seconds: float,
                        stages: dict[str, float]) -> None:
        """One finished inference request (model "" when the name is not served)."""
        self.requests.labels(model, protocol, code).inc()
        self.request_duration.labels(model, protocol).observe(seconds)
        for stage, stage_seconds in stages.items():
            self.stage_duration.labels(model, stage).observe(stage_seconds)
        if code in ("SERVICE_BUSY", "TIMEOUT"):
            self.rejected.labels(model, code).inc()
        if model:
            self.recent(model).add(seconds, code == "OK")

    def recent(self, model: str) -> _RecentLatency:
        with self._recent_lock:
            if model not in self._recent:
                self._recent[model] = _RecentLatency()
            return self._recent[model]


class _RecentLatency:
    """Latencies of the last requests of a model (bounded), for `predictors status`."""

    def __init__(self, size: int = 1024, window: float = RECENT_WINDOW_SECONDS) -> None:
        self.window = window
        self._samples: deque[tuple[float, float, bool]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float, ok: bool) -> None:
        with self._lock:
            self._samples.append((time.monotonic(), seconds, ok))

    def summary(self) -> dict[str, Any]:
        """{window_seconds, requests, errors, p50_ms, p95_ms, max_ms}; latencies of successful requests."""
        since = time.monotonic() - self.window
        with self._lock:
            recent = [(seconds, ok) for at, seconds, ok in self._samples if at >= since]
        latencies = sorted(seconds for seconds, ok in recent if ok)
        return {
            "window_seconds": self.window,
            "requests": len(recent),
            "errors": sum(1 for _, ok in recent if not ok),
            "p50_ms": _quantile_ms(latencies, 0.50),
            "p95_ms": _quantile_ms(latencies, 0.95),
            "max_ms": round(latencies[-1] * 1000, 3) if latencies else None,
        }


def _quantile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 3)


class _GpuMemoryCollector(Collector):
    """CUDA memory of this process on the devices models run on, read at scrape time (absent on CPU)."""

    def __init__(self) -> None:
        self.devices: set[str] = set()

    def describe(self) -> Iterable[Any]:
        return []  # collected lazily; nothing to check for duplicates at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.devices:
            return
        import torch

        used = GaugeMetricFamily("predictors_gpu_memory_used_bytes",
                                 "GPU memory held by tensors of this process.", labels=["device"])
        reserved = GaugeMetricFamily("predictors_gpu_memory_reserved_bytes",
                                     "GPU memory reserved by this process' caching allocator.",
                                     labels=["device"])
        for device in sorted(self.devices):
            try:
                used.add_metric([device], float(torch.cuda.memory_allocated(device)))
                reserved.add_metric([device], float(torch.cuda.memory_reserved(device)))
            except Exception:  # noqa: BLE001 - a scrape must not fail because of one device
                continue
        yield used
        yield reserved
