"""Device choice, the per-device inference thread, and the CUDA out-of-memory fallback.

All torch work for a model runs on one dedicated thread (never on the asyncio event loop), under
``torch.inference_mode()``. When a forward pass raises CUDA out-of-memory the batch is split in halves
and retried; a single item that still does not fit runs on the CPU. The process never dies from it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

CPU = torch.device("cpu")

Precision = Literal["fp32", "fp16", "bf16"]
#: the autocast dtype of each reduced precision
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse, at start-up, a precision the device cannot run well: fp16 only on CUDA."""
    if precision not in ("fp32", *AUTOCAST_DTYPES):
        raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision fp16 needs a CUDA device but the model runs on {device}; "
            "use precision bf16 (or fp32) on the CPU"
        )


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """Autocast to the reduced precision on `device`; fp32 (and fp16 on a CPU fallback) runs unchanged."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None or (dtype is torch.float16 and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def stack_to_device(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """`torch.stack(tensors).to(device)`; on CUDA stacked into pinned host memory and copied without
    blocking (the copy overlaps the host work that follows until the first kernel needs it)."""
    if device.type != "cuda":
        return torch.stack(list(tensors)).to(device)
    first = tensors[0]
    staging = torch.empty((len(tensors), *first.shape), dtype=first.dtype, pin_memory=True)
    torch.stack(list(tensors), out=staging)
    return staging.to(device, non_blocking=True)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor.to(device)`; a host tensor bound for CUDA goes through pinned memory, non-blocking."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def enable_cudnn_autotuner(device: torch.device) -> None:
    """On CUDA let cuDNN pick the fastest convolution algorithm per input shape (measured on first use,
    i.e. at warm-up for the warm-up's shapes); serving shapes repeat, so the search pays off."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def resolve_device(spec: str) -> torch.device:
    """Turn `auto|cpu|cuda|cuda:N` into a torch device; `auto` prefers CUDA when one is usable."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else CPU
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available on this machine")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
        return torch.device("cuda", index)
    return device


class DeviceLost(RuntimeError):
    """The model's device is unusable (an unrecoverable CUDA error such as an illegal memory access):
    every later forward pass would fail too, so the model stops serving and the process exits for
    Kubernetes to restart it. Never retried, split or isolated per item."""


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError)


class DeviceReplicas:
    """A model's torch modules on its primary device, plus lazily made copies for fallback devices."""

    def __init__(self, modules: dict[str, torch.nn.Module], primary: torch.device) -> None:
        self.primary = primary
        self._copies: dict[torch.device, dict[str, torch.nn.Module]] = {primary: modules}
        self._lock = threading.Lock()

    def on(self, device: torch.device) -> dict[str, torch.nn.Module]:
        with self._lock:
            if device not in self._copies:
                logger.warning("making a copy of the model on %s for the out-of-memory fallback", device)
                self._copies[device] = {
                    name: copy.deepcopy(module).to(device)  # keeps eval mode
                    for name, module in self._copies[self.primary].items()
                }
            return self._copies[device]


class DeviceRunner:
    """Runs batched forward passes on one worker thread with split-and-fall-back on CUDA OOM."""

    def __init__(
        self,
        device: torch.device,
        on_oom: Callable[[str], None] = lambda stage: None,
        fallback_device: torch.device = CPU,
    ) -> None:
        self.device = device
        self.fallback_device = fallback_device
        self._on_oom = on_oom
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"torch-{device}")

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    def run(
        self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: Sequence[T]
    ) -> list[R]:
        """Call `forward(batch, device)` (on the caller's thread) with the OOM split/fallback policy."""
        with torch.inference_mode():
            return self._run(forward, list(batch), self.device)

    def _run(self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: list[T],
             device: torch.device) -> list[R]:
        try:
            results = list(forward(batch, device))
        except Exception as error:  # noqa: BLE001 - only OOM is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            self._release_cached_memory()
            if len(batch) > 1:
                self._on_oom("split")
                middle = len(batch) // 2
                logger.warning("CUDA out of memory on a batch of %d; retrying in halves", len(batch))
                return self._run(forward, batch[:middle], device) + self._run(forward, batch[middle:], device)
            if device != self.fallback_device:
                self._on_oom("cpu_fallback")
                logger.warning("CUDA out of memory on a single item; running it on %s", self.fallback_device)
                return self._run(forward, batch, self.fallback_device)
            raise
        if len(results) != len(batch):
            raise RuntimeError(f"forward returned {len(results)} results for {len(batch)} items")
        return results

    @staticmethod
    def _release_cached_memory() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

