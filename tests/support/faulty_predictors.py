"""Predictors that fail on purpose, for fault-injection tests against the real server process.

Served like any custom predictor: ``{"predictor": "tests.support.faulty_predictors:FaultyClassifier"}``
in a model directory's predictor.json (the server runs with the repository root as its working
directory). Only the server process imports this module: it pulls in KServe, which the integration
tier must not import.

`FaultyClassifier` is the real generic classifier (the demo directory's MobileNetV3 weights), failing
only for images whose width is one of the markers in `tests.support.faults`. Options:
``load_seconds`` (a slow ``load_weights``), ``slow_forward_seconds`` (for `FORWARD_SLOW` images), and faults of
a whole version rather than of marked images (a bad canary): ``failing_share`` (that share of the items, evenly
spread, fail in finish: 500 INTERNAL_ERROR) and ``forward_delay_seconds`` (every forward pass takes that much
longer).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from predictors.errors import InvalidImage
from predictors.models.classification import TopK
from predictors.models.image_classification.predictor import ImageClassificationPredictor
from predictors.settings import ModelOptions
from tests.support import faults


class InjectedFault(RuntimeError):
    """What a faulty step raises: an unexpected error, as a bug in a model would."""


@dataclass(frozen=True)
class MarkedItem:
    tensor: torch.Tensor
    width: int


class FaultyOptions(ModelOptions):
    load_seconds: float = 0
    slow_forward_seconds: float = 3
    failing_share: float = 0
    forward_delay_seconds: float = 0


class FaultyClassifier(ImageClassificationPredictor):
    predictor_name = "faulty-classifier"
    Options = FaultyOptions
    options: FaultyOptions

    def load_weights(self, device: torch.device) -> None:
        time.sleep(self.options.load_seconds)
        super().load_weights(device)
        self._finished = itertools.count()
        self._finished_lock = threading.Lock()

    def prepare(self, item: Mapping[str, Any], params: Any) -> Any:
        width = item["image"].width
        if width == faults.PREPARE_RAISES:
            raise InjectedFault("injected fault in prepare")
        return MarkedItem(super().prepare(item, params), width)

    def forward(self, batch: Sequence[Any], device: torch.device) -> list[TopK]:
        widths = [item.width for item in batch]
        if faults.FORWARD_RAISES in widths:
            raise InjectedFault(f"injected fault in forward (a batch of {len(batch)})")
        if faults.FORWARD_SLOW in widths:
            time.sleep(self.options.slow_forward_seconds)
        time.sleep(self.options.forward_delay_seconds)
        return super().forward([item.tensor for item in batch], device)

    def finish(self, prepared: Any, raw: TopK, params: Any) -> dict[str, Any]:
        if prepared.width == faults.FINISH_RAISES:
            raise InjectedFault("injected fault in finish")
        if prepared.width == faults.FINISH_REFUSES:
            raise InvalidImage("this picture is refused on purpose")
        if self.options.failing_share:
            with self._finished_lock:
                index = next(self._finished)
            # the item fails when it crosses the next multiple of 1/share: that share of items, evenly spread
            if int((index + 1) * self.options.failing_share) > int(index * self.options.failing_share):
                raise InjectedFault("injected failure of a share of the items")
        return super().finish(prepared.tensor, raw, params)
