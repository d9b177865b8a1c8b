"""Typed results of the models, read from their v2 outputs (README "Contracts per model")."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from predictors_client.errors import UnexpectedResponse
from predictors_client.wire import InferResult, Tensor

#: the entailment classes in the order of the `scores` vector, for servers that predate `element_names`
ENTAILMENT_CLASSES = ("entailment", "contradiction", "neutral")

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"BM", "bmp"))


@dataclass(frozen=True)
class Labels:
    """Top-k labels, best first, and their softmax scores."""

    labels: list[str]
    scores: list[float]


@dataclass(frozen=True)
class EnhancedFace:
    """A face-enhanced image and how far to trust it."""

    image_bytes: bytes
    faces: int
    quality_score: float
    needs_review: bool
    width: int
    height: int

    @property
    def format(self) -> str:
        """`jpeg`, `png`, `webp` or `bmp`, read from the image's first bytes."""
        for magic, name in _MAGIC:
            if self.image_bytes.startswith(magic):
                return name
        if self.image_bytes[:4] == b"RIFF" and self.image_bytes[8:12] == b"WEBP":
            return "webp"
        return "unknown"

    def save(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.write_bytes(self.image_bytes)
        return target


@dataclass(frozen=True)
class Entailment:
    """Whether the image (with the optional premise) entails the hypothesis; scores by class name."""

    label: str
    scores: dict[str, float]


def _output(result: InferResult, name: str) -> Tensor:
    try:
        return result.outputs[name]
    except KeyError:
        raise UnexpectedResponse(
            f"model '{result.model_name}' answered without output '{name}' (outputs: {sorted(result.outputs)}); "
            "is it the right kind of model for this method?", status=200, request_id=result.request_id,
        ) from None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _binary(value: bytes | str) -> bytes:
    # over JSON the server sends binary content as base64 text
    return value if isinstance(value, bytes) else base64.b64decode(value)


def labels_from(result: InferResult) -> list[Labels]:
    labels, scores = _output(result, "labels").rows(), _output(result, "scores").rows()
    return [Labels([_text(v) for v in row], [float(s) for s in score_row])
            for row, score_row in zip(labels, scores, strict=True)]


def faces_from(result: InferResult) -> list[EnhancedFace]:
    columns = [_output(result, name).data
               for name in ("image", "faces", "quality_score", "needs_review", "width", "height")]
    return [EnhancedFace(_binary(image), int(faces), float(quality), bool(review), int(width), int(height))
            for image, faces, quality, review, width, height in zip(*columns, strict=True)]


def entailments_from(result: InferResult) -> list[Entailment]:
    scores = _output(result, "scores")
    names = str(scores.parameters.get("element_names", "")).split(",") if scores.parameters.get(
        "element_names") else list(ENTAILMENT_CLASSES)
    return [Entailment(_text(label), {name: float(s) for name, s in zip(names, row, strict=True)})
            for label, row in zip(_output(result, "label").data, scores.rows(), strict=True)]
