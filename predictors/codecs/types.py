"""The typed contract between the wire codecs and the predictors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.shape]}


#: Wire values of one item before decoding: image bytes, text strings.
RawItem = dict[str, "bytes | str"]


@dataclass
class WireRequest:
    """A request parsed off the wire (cheap, on the event loop); images are still encoded bytes."""

    items: list[RawItem]
    parameters: dict[str, Any] = field(default_factory=dict)
    protocol: Literal["v1", "v2", "grpc"] = "v1"
    #: v2 only: names of the outputs the caller asked for, with whether each should be binary
    requested_outputs: dict[str, bool] | None = None
    binary_outputs: bool = False
