"""Prometheus metrics of the predictors (served on the REST port's ``/metrics`` next to KServe's own).

One `Metrics` object is made per server and passed to every model; tests pass their own registry.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.oom_fallbacks = Counter(
            "predictors_cuda_oom_fallbacks_total",
            "Forward passes that hit CUDA out-of-memory and were split ('split') or moved to the CPU "
            "('cpu_fallback').",
            ["model", "action"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "predictors_batch_size_items",
            "Items per forward pass.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "predictors_queue_depth_items", "Items waiting for a forward pass.", ["model"], registry=registry
        )
        self.items = Counter(
            "predictors_items_processed_total", "Items that went through a forward pass.", ["model"],
            registry=registry,
        )
        self.rejected = Counter(
            "predictors_rejected_requests_total",
            "Requests refused before inference, by reason (SERVICE_BUSY, TIMEOUT).",
            ["model", "code"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "predictors_model_ready", "1 when the model is loaded and warmed up.", ["model"], registry=registry
        )
        self.load_seconds = Gauge(
            "predictors_model_load_seconds", "Time to load and warm up the model.", ["model"], registry=registry
        )
        self.device_info = Gauge(
            "predictors_model_device_info", "The device a model runs on (value 1).", ["model", "device"],
            registry=registry,
        )
        self.review_flags = Counter(
            "predictors_results_needing_review_total",
            "Results whose quality signal fell below the model's review threshold.",
            ["model"],
            registry=registry,
        )
