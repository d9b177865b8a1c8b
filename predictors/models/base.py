"""`Predictor`: the model contract, and nothing else.

A model class declares ``name`` (`predictor_name`), ``inputs``, ``outputs``, typed ``Parameters`` (per
request) and typed ``Options`` (predictor.json, unknown keys refused) and implements four synchronous steps:

- ``load_weights(device)``: read the model directory once (weights, transforms, label tables);
- ``prepare(item, params)``: one decoded item -> model-ready data (worker pool, in parallel);
- ``forward(batch, device)``: a list of prepared items -> one raw result each (device thread,
  ``torch.inference_mode()``, batched across requests, CUDA-OOM split/fallback);
- ``finish(prepared, raw, params)``: -> the item's result, a dict of output name -> value (worker pool);

plus the warm-up: ``warmup_item()`` (a decoded item) which the runtime hands to ``prepare_warmup`` (by
default ``prepare``; a model whose warm-up differs from a request, such as face enhancement, overrides it).

A predictor receives no metrics, executor or transport. Everything around these steps (the worker pool,
the batcher, the device runner, deadlines, metrics, spans) is `predictors.runtime.ModelRuntime`; where a
model needs the device thread outside ``forward`` (face detection in ``prepare``) it calls
``run_on_device``, a capability the runtime binds when it loads the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from predictors.codecs.types import AnswerOutputs, InputSpec, OutputSpec
from predictors.errors import InvalidInput, ModelNotReady
from predictors.settings import ModelConfig, ModelOptions

Prepared = TypeVar("Prepared")
Raw = TypeVar("Raw")
T = TypeVar("T")
R = TypeVar("R")

#: runs `forward(batch, device)` on the model's device thread with its out-of-memory policy (bound by the runtime)
DeviceCall = Callable[[Callable[[Sequence[Any], torch.device], Sequence[Any]], Sequence[Any]], list[Any]]

#: a loader's error message is cut here in the one-line report (torch's run to several sentences)
MAX_REASON_CHARS = 300


class ModelFileError(ValueError):
    """A file of the model directory is missing, unreadable or not what the predictor expects.

    The server stops with one log line naming the file and the reason (the stack trace goes to DEBUG):
    a broken model directory is an operator's problem, not a bug to debug."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Path]:
    """``with reading(path) as p: ...load p...``: any failure inside becomes a `ModelFileError` naming `path`."""
    try:
        yield path
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(path, "missing") from None
    except Exception as error:  # noqa: BLE001 - whatever a loader raises, the file is the cause to report
        detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        if len(detail) > MAX_REASON_CHARS:
            detail = detail[:MAX_REASON_CHARS] + " ..."
        raise ModelFileError(path, f"cannot be read ({type(error).__name__}: {detail})") from error


class NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Predictor(Generic[Prepared, Raw]):
    """The contract of one model (see the module docstring); subclassed once per model."""

    predictor_name: ClassVar[str]
    inputs: ClassVar[tuple[InputSpec, ...]] = (InputSpec("image", "image"),)
    outputs: ClassVar[tuple[OutputSpec, ...]]
    Parameters: ClassVar[type[BaseModel]] = NoParameters
    #: the model's predictor.json ``options`` (validated at start-up; unknown keys are an error)
    Options: ClassVar[type[ModelOptions]] = ModelOptions
    #: the outputs whose values the runtime records for every result of a request (not of the warm-up):
    #: top-1 score, quality score, faces found, flagged for review (``predictors_answer_*``,
    #: ``predictors_results_needing_review_total``)
    answer_outputs: ClassVar[AnswerOutputs] = AnswerOutputs()

    def __init__(self, name: str, model_dir: Path, config: ModelConfig) -> None:
        self.name = name
        self.model_dir = model_dir
        self.config = config
        self.options = self.Options.model_validate(config.options)
        self._device_call: DeviceCall | None = None

    # ---- what subclasses implement -------------------------------------------------------------

    def load_weights(self, device: torch.device) -> None:
        raise NotImplementedError

    def prepare(self, item: Mapping[str, Any], params: Any) -> Prepared:
        raise NotImplementedError

    def forward(self, batch: Sequence[Prepared], device: torch.device) -> Sequence[Raw]:
        raise NotImplementedError

    def finish(self, prepared: Prepared, raw: Raw, params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def warmup_item(self) -> Mapping[str, Any]:
        """A decoded item used for the warm-up inference before the model reports ready."""
        raise NotImplementedError

    def prepare_warmup(self, params: Any) -> Prepared:
        """The warm-up item, prepared: what the runtime's warm-up forwards (never `prepare` with a marked item)."""
        return self.prepare(self.warmup_item(), params)

    # ---- given by the runtime ------------------------------------------------------------------

    def bind_device(self, call: DeviceCall | None) -> None:
        """The runtime's device thread (with its out-of-memory policy), for `run_on_device`."""
        self._device_call = call

    def run_on_device(
        self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: Sequence[T]
    ) -> list[R]:
        """Model work outside the batched `forward` (e.g. per-image detection in `prepare`) on the
        device thread, with its out-of-memory policy; blocks the calling (worker) thread until done."""
        if self._device_call is None:
            raise ModelNotReady(f"model '{self.name}' is not loaded")
        return self._device_call(forward, batch)

    def parse_parameters(self, raw: Mapping[str, Any]) -> Any:
        """The request's parameters as the model's typed `Parameters` (strict: a JSON `true` is not the
        integer 1 and "3" is not a number)."""
        try:
            return self.Parameters.model_validate(dict(raw), strict=True)
        except ValidationError as error:
            problems = "; ".join(
                f"parameters.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise InvalidInput(problems) from None
