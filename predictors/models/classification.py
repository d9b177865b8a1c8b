"""Shared top-k classification plumbing for `general-recognition` and `image-classification`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from predictors.codecs.types import AnswerOutputs, OutputSpec
from predictors.device import DeviceReplicas, stack_to_device
from predictors.models.base import Predictor

MAX_TOP_K = 100


class ClassificationParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="How many labels to return per image.")


@dataclass(frozen=True)
class TopK:
    """The best `MAX_TOP_K` classes of one image: probabilities, class indices and the raw top-1 logit."""

    probabilities: torch.Tensor
    indices: torch.Tensor
    top_logit: float


class ClassifierPredictor(Predictor[torch.Tensor, TopK]):
    """Image -> transform -> network -> softmax -> top-k labels. Subclasses load the three pieces."""

    outputs: ClassVar[tuple[OutputSpec, ...]] = (
        OutputSpec("labels", "BYTES", (-1,)),
        OutputSpec("scores", "FP32", (-1,)),
    )
    answer_outputs = AnswerOutputs(top_score="scores")
    Parameters = ClassificationParameters

    replicas: DeviceReplicas
    network: torch.nn.Module
    transform: Callable[[Any], torch.Tensor]
    labels: Sequence[str]
    #: the network already outputs probabilities
    outputs_probabilities: bool = False

    def prepare(self, item: Mapping[str, Any], params: Any) -> torch.Tensor:
        return self.transform(item["image"])

    def forward(self, batch: Sequence[torch.Tensor], device: torch.device) -> list[TopK]:
        network = self.replicas.on(device)["network"]
        logits = network(stack_to_device(batch, device))
        if logits.ndim != 2 or logits.shape[1] != len(self.labels):
            raise RuntimeError(
                f"the network returned shape {tuple(logits.shape)}; expected [N, {len(self.labels)}] "
                "(one score per label)"
            )
        probabilities = logits.float() if self.outputs_probabilities else logits.float().softmax(dim=1)
        k = min(MAX_TOP_K, probabilities.shape[1])
        top_probabilities, top_indices = probabilities.topk(k, dim=1)
        top_logits = logits.float().max(dim=1).values
        return [
            TopK(p, i, float(logit))
            for p, i, logit in zip(top_probabilities.cpu(), top_indices.cpu(), top_logits.cpu(), strict=True)
        ]

    def finish(self, prepared: torch.Tensor, raw: TopK, params: Any) -> dict[str, Any]:
        k = min(params.top_k, len(raw.indices))
        return {
            "labels": [self.labels[int(i)] for i in raw.indices[:k]],
            "scores": [float(p) for p in raw.probabilities[:k]],
        }
