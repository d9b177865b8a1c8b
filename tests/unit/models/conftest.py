from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client import CollectorRegistry

from predictors.models.base import ModelConfig, Predictor
from predictors.models.registry import predictor_class
from predictors.precision import Bf16Support, read_bf16_support
from predictors.runtime import ModelRuntime
from predictors.telemetry.metrics import Metrics


@pytest.fixture(scope="module")
def workers() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown()


def load_runtime(predictor: str, directory: Path, workers: ThreadPoolExecutor, name: str | None = None,
                 config: ModelConfig | None = None,
                 bf16_support: Callable[[torch.device], Bf16Support] = read_bf16_support) -> ModelRuntime[Any, Any]:
    """Build and load a model the way the server does (its runtime, with its own metrics registry)."""
    model = predictor_class(predictor)(name or predictor, directory, config or ModelConfig(device="cpu"))
    runtime = ModelRuntime(model, Metrics(CollectorRegistry()), workers, bf16_support=bf16_support)
    runtime.load()
    return runtime


def load_predictor(predictor: str, directory: Path, workers: ThreadPoolExecutor, name: str | None = None,
                   config: ModelConfig | None = None) -> Predictor[Any, Any]:
    """A loaded model's contract (`load_runtime(...).predictor`): its steps called directly."""
    return load_runtime(predictor, directory, workers, name, config).predictor
