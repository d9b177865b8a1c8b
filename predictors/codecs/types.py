"""The typed contract between the wire codecs and the predictors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from predictors.errors import InvalidInput

InputKind = Literal["image", "text"]
Datatype = Literal["BYTES", "FP32", "INT32", "INT64", "BOOL"]


@dataclass(frozen=True)
class InputSpec:
    """One named input of a model; every item of a request carries each required input once."""

    name: str
    kind: InputKind
    optional: bool = False
    #: text inputs: longest accepted value in UTF-8 bytes
    max_bytes: int = 1024

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": "BYTES", "shape": [-1]}


@dataclass(frozen=True)
class OutputSpec:
    """One named output; `shape` is per item (the batch dimension is prepended), -1 for variable."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...] = ()
    #: names of the elements of a fixed-size vector output: v1 presents the vector as {name: value}
    element_names: tuple[str, ...] = ()
    #: an encoded image (`EncodedImage`) output: the request parameter that picks its encoding ("jpeg",
    #: "png"). v1 may then answer this image itself as the body (``Accept: image/*``, `codecs.accept`),
    #: setting the parameter from ``Accept`` when the request leaves it out.
    image_format_parameter: str | None = None

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.shape]}


@dataclass(frozen=True)
class ImageURL:
    """An image the request names by URL instead of carrying it; the server fetches it before the model sees the
    item (`dataplane/image_urls.py`), so a predictor only ever gets bytes."""

    url: str


@dataclass(frozen=True)
class AnswerOutputs:
    """Which outputs of a model's result say something about its answers, cheaply: the runtime records them
    per result (``predictors_answer_*`` metrics) so that a canary's answers can be compared with stable's.
    Each is an output name of the model, or None."""

    #: an FP32 vector of probabilities; its largest element is the answer's top-1 score
    top_score: str | None = None
    #: an FP32 scalar rating the result (higher is better)
    quality: str | None = None
    #: an INT32 count of faces found in the image
    faces: str | None = None
    #: a BOOL output that flags a result for a human to look at
    review: str | None = None


#: Wire values of one item before decoding: image bytes (or the URL to fetch them from), text strings.
RawItem = dict[str, "bytes | str | ImageURL"]


@dataclass
class WireRequest:
    """A request parsed off the wire (cheap, on the event loop); images are still encoded bytes."""

    items: list[RawItem]
    parameters: dict[str, Any] = field(default_factory=dict)
    protocol: Literal["v1", "v2", "grpc"] = "v1"
    #: v2 only: names of the outputs the caller asked for, with whether each should be binary
    requested_outputs: dict[str, bool] | None = None
    binary_outputs: bool = False
    #: v1 only: answer with the image output itself, not JSON (``Accept: image/...``, `codecs.accept`)
    image_answer: bool = False
    #: v2 and gRPC: the request's own ``id`` ("" when it has none), returned unchanged in the answer
    request_id: str = ""
    #: gRPC only: the request sent its tensors in raw_input_contents, so the answer uses raw_output_contents
    raw_outputs: bool = False


@dataclass
class AnsweredRequest:
    """What the KServe adapter's ``predict`` hook hands to its ``postprocess`` hook: the request as decoded
    (v2 encodes its answer after the request's id and requested outputs) and the model's result per item."""

    wire: WireRequest
    results: list[dict[str, Any]]


#: request parameters every model understands (the rest are the model's typed `Parameters`)
COMMON_PARAMETERS = frozenset({"timeout_ms"})
TIMEOUT_HEADER = "x-request-timeout-ms"


def model_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The request's parameters for the model: all but the `COMMON_PARAMETERS`."""
    return {key: value for key, value in parameters.items() if key not in COMMON_PARAMETERS}


def request_deadline(parameters: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    """The request's deadline (``time.monotonic()`` clock) from ``parameters.timeout_ms`` or else the
    ``X-Request-Timeout-Ms`` header; None without either."""
    if "timeout_ms" in parameters:
        value = parameters["timeout_ms"]
        # typed like every other parameter: a number, not a boolean or a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"parameters.timeout_ms must be a number of milliseconds, got {value!r}")
        timeout_ms = float(value)
    elif TIMEOUT_HEADER in headers:
        try:
            timeout_ms = float(headers[TIMEOUT_HEADER])
        except ValueError:
            raise InvalidInput(f"X-Request-Timeout-Ms must be a number of milliseconds, got "
                               f"{headers[TIMEOUT_HEADER]!r}") from None
    else:
        return None
    if not 0 < timeout_ms < float("inf"):
        raise InvalidInput("timeout_ms must be a positive, finite number of milliseconds")
    return time.monotonic() + timeout_ms / 1000.0
