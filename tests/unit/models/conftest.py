from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from predictors.models.base import ModelConfig, VisionPredictor
from predictors.models.registry import predictor_class
from predictors.telemetry.metrics import Metrics


@pytest.fixture(scope="module")
def workers() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown()


def load_predictor(predictor: str, directory: Path, workers: ThreadPoolExecutor, name: str | None = None,
                   config: ModelConfig | None = None) -> VisionPredictor[Any, Any]:
    """Build and load a predictor the way the server does, with its own metrics registry."""
    model = predictor_class(predictor)(
        name or predictor, directory, config or ModelConfig(device="cpu"), Metrics(CollectorRegistry()), workers
    )
    model.load()
    return model
