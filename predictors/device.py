"""Device choice, the per-device inference thread, and what happens when the device fails.

All torch work for a model runs on one dedicated thread (never on the asyncio event loop), under
``torch.inference_mode()``. How a failed forward pass is handled depends on what failed
(`classify_failure`):

- CUDA out of memory (also cuBLAS/cuDNN allocation failures): the batch is split in halves and
  retried; a single item that still does not fit is recomputed on the CPU replica by a separate CPU
  thread, so the device thread goes on with other batches meanwhile. Every retry starts after the
  failed attempt's exception is gone (its traceback holds the attempt's inputs and activations) and
  the allocator's cache was emptied.
- an unrecoverable CUDA error (illegal memory access, device-side assert, ECC error, a cuBLAS/cuDNN
  execution failure ...): the CUDA context is unusable for the rest of the process, so the runner
  raises `DeviceLost`, refuses every later batch, and tells its owner (the model stops being ready and
  the server exits for Kubernetes to restart the pod).
- anything else belongs to the batch's items and is re-raised unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

CPU = torch.device("cpu")


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


def warmup_batch_sizes(device: torch.device, max_batch_size: int) -> list[int]:
    """The batch sizes a model's warm-up runs before it reports ready.

    On an accelerator every size the batcher tends to form (powers of two up to `max_batch_size`, and
    `max_batch_size` itself): cuBLAS/cuDNN create handles, pick algorithms and the caching allocator
    grows per shape on first use, which would otherwise land on the first requests of each size. On
    the CPU one batch of 1 is enough: there are no handles or plans to create there, and each extra
    pass (seconds for the larger models) would only delay readiness.
    """
    if device.type == "cpu":
        return [1]
    sizes = []
    size = 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max(1, max_batch_size))
    return sizes


class DeviceLost(RuntimeError):
    """The model's device is unusable (an unrecoverable CUDA error such as an illegal memory access):
    every later forward pass would fail too, so the model stops serving and the process exits for
    Kubernetes to restart it. Never retried, split or isolated per item."""


class Failure(Enum):
    OUT_OF_MEMORY = "out_of_memory"
    DEVICE_LOST = "device_lost"
    OTHER = "other"


#: allocation failures of CUDA and its libraries: the memory may be there after freeing the cache
_ALLOCATION_FAILURES = (
    "CUDA error: out of memory",  # cudaErrorMemoryAllocation outside the caching allocator
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",  # cuDNN 9's names
    "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
)

#: errors after which the CUDA context is unusable ("sticky" errors: the CUDA runtime documentation
#: says the process must be terminated and relaunched), and library failures that leave it so
_UNRECOVERABLE = (
    "an illegal memory access was encountered",  # cudaErrorIllegalAddress
    "unspecified launch failure",  # cudaErrorLaunchFailure
    "device-side assert triggered",  # cudaErrorAssert
    "hardware stack error",  # cudaErrorHardwareStackError
    "an illegal instruction was encountered",  # cudaErrorIllegalInstruction
    "misaligned address",  # cudaErrorMisalignedAddress
    "operation not supported on global/shared address space",  # cudaErrorInvalidAddressSpace
    "invalid program counter",  # cudaErrorInvalidPc
    "the launch timed out and was terminated",  # cudaErrorLaunchTimeout
    "uncorrectable ECC error encountered",  # cudaErrorECCUncorrectable
    "uncorrectable NVLink error",  # cudaErrorNvlinkUncorrectable
    "CUDA error: unknown error",  # cudaErrorUnknown (e.g. the GPU fell off the bus)
    "CUBLAS_STATUS_EXECUTION_FAILED",
    "CUBLAS_STATUS_INTERNAL_ERROR",
    "CUDNN_STATUS_EXECUTION_FAILED",
    "CUDNN_STATUS_INTERNAL_ERROR",
    "CUDNN_STATUS_MAPPING_ERROR",
)


def classify_failure(error: BaseException) -> Failure:
    """What a forward pass's exception means for the device.

    Input-dependent library errors (CUBLAS_STATUS_NOT_SUPPORTED, CUDNN_STATUS_BAD_PARAM, "invalid
    configuration argument" ...) are OTHER: they leave the context usable, and a request must never be
    able to restart the pod with an error that only its own input causes.
    """
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return Failure.OUT_OF_MEMORY
    # torch.AcceleratorError is a RuntimeError; a TorchScript model's errors may come as torch.jit.Error
    if not isinstance(error, (RuntimeError, torch.jit.Error)):
        return Failure.OTHER
    message = str(error)
    if any(text in message for text in _ALLOCATION_FAILURES):
        return Failure.OUT_OF_MEMORY
    if any(text in message for text in _UNRECOVERABLE):
        return Failure.DEVICE_LOST
    return Failure.OTHER


def _summary(error: BaseException) -> str:
    """The line of the error's message that says what happened (TorchScript puts its own first)."""
    lines = str(error).splitlines() or [type(error).__name__]
    known = _ALLOCATION_FAILURES + _UNRECOVERABLE
    return next((line for line in lines if any(text in line for text in known)), lines[0])


def is_out_of_memory(error: BaseException) -> bool:
    return classify_failure(error) is Failure.OUT_OF_MEMORY


def copy_to_device(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of a CPU module on `device` (the CPU original stays as it is)."""
    return copy.deepcopy(module).to(device)  # keeps eval mode


class DeviceReplicas:
    """A model's torch modules on its primary device and, when that is not the CPU, on the CPU.

    Built from the CPU modules made at load: they stay as the CPU replica of the out-of-memory
    fallback, and the primary device gets copies (`to_device`, a deep copy moved there by default;
    exported or scripted programs bring their own). Nothing is ever copied from the GPU after an
    out-of-memory error. The price is host memory: on CUDA the weights are held twice, once in GPU
    memory and once in RAM (see docs/gpu.md for each model's size).
    """

    def __init__(
        self,
        cpu_modules: dict[str, torch.nn.Module],
        primary: torch.device,
        to_device: Callable[[torch.nn.Module, torch.device], torch.nn.Module] = copy_to_device,
    ) -> None:
        for name, module in cpu_modules.items():
            devices = {tensor.device for tensor in (*module.parameters(), *module.buffers())}
            if devices - {CPU}:
                raise ValueError(f"module {name!r} must be given on the CPU, it is on {sorted(map(str, devices))}")
        self.primary = primary
        self._replicas: dict[torch.device, dict[str, torch.nn.Module]] = {CPU: cpu_modules}
        if primary != CPU:
            self._replicas[primary] = {name: to_device(module, primary) for name, module in cpu_modules.items()}

    def on(self, device: torch.device) -> dict[str, torch.nn.Module]:
        try:
            return self._replicas[device]
        except KeyError:
            raise ValueError(f"no replica on {device}; the model has {sorted(map(str, self._replicas))}") from None


@dataclass(frozen=True)
class Fallback(Generic[R]):
    """The result of an item being recomputed on the fallback device by the fallback thread."""

    future: Future[R]


async def settle(results: Sequence[R | Fallback[R]]) -> list[R]:
    """The results of a batch, waiting (without blocking the event loop) for its fallback items."""
    return [await asyncio.wrap_future(r.future) if isinstance(r, Fallback) else r for r in results]


def wait_for_fallbacks(results: Sequence[R | Fallback[R]]) -> list[R]:
    """`settle` for a thread that may block (never the device thread)."""
    return [r.future.result() if isinstance(r, Fallback) else r for r in results]


@dataclass(frozen=True)
class LowerPriority:
    """How far a thread stays behind request handling: CPU forward passes (`Settings.cpu_forward_nice`,
    `Settings.cpu_forward_idle`) and asynchronous jobs' CPU work (niced only); `apply` on the thread concerned.

    On a CPU the forward pass keeps every core busy; without this the event loop, the decoding threads and
    the job worker wait behind it for a core, which delays every answer, submit and next batch (measured:
    docs/performance.md, "Asynchronous jobs"). Niceness makes them wait less; under Linux's SCHED_IDLE
    policy they do not wait at all: a waking thread of normal policy takes the core from a SCHED_IDLE one
    at once, where against a niced one it may wait for the rest of its time slice (~1-3 ms per wake-up, and
    a request wakes several threads). Both are per thread on Linux and inherited by the threads it starts
    (torch's intra-op threads). Lowering one's own priority needs no privilege; where it is refused anyway
    (a seccomp profile), or there is no SCHED_IDLE (not Linux), the thread keeps what it has, with a warning."""

    nice: int = 0
    idle: bool = False

    def apply(self) -> None:
        """Lower the calling thread's priority."""
        thread = threading.get_native_id()
        name = threading.current_thread().name
        if self.nice:
            try:
                os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + self.nice))
            except OSError as error:
                logger.warning("could not lower the priority of thread %r (niceness +%d): %s", name, self.nice, error)
        if self.idle:
            try:
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
            except (OSError, AttributeError) as error:
                logger.warning("could not run thread %r under SCHED_IDLE: %s", name, error)


#: no lowering: the same priority as request handling
SAME_PRIORITY = LowerPriority()


class DeviceRunner:
    """Runs batched forward passes on one device thread, with the failure policy of this module."""

    def __init__(
        self,
        device: torch.device,
        on_oom: Callable[[str], None] = lambda action: None,
        on_device_lost: Callable[[DeviceLost], None] = lambda error: None,
        fallback_device: torch.device = CPU,
        cpu_priority: LowerPriority = SAME_PRIORITY,
    ) -> None:
        self.device = device
        self.cpu_priority = cpu_priority
        self.fallback_device = fallback_device
        self._on_oom = on_oom
        self._on_device_lost = on_device_lost
        self._lost: DeviceLost | None = None
        self._device_thread: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"torch-{device}", initializer=self._bind_thread
        )
        self._fallback_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"torch-fallback-{fallback_device}"
        )

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The device thread: run `run` here, and nothing else that touches the device."""
        return self._executor

    def run(
        self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: Sequence[T]
    ) -> list[R | Fallback[R]]:
        """Call `forward(batch, device)` (on the caller's thread, meant to be the device thread) with the
        failure policy; items recomputed on the fallback device come back as `Fallback` futures."""
        if self._lost is not None:
            raise DeviceLost(f"{self.device} was lost earlier: {self._lost}")
        with torch.inference_mode():
            return self._run(forward, list(batch))

    def call(self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: Sequence[T]) -> list[R]:
        """`run` on the device thread for a caller on another thread, which blocks until all is done."""
        if threading.current_thread() is self._device_thread:
            raise RuntimeError("DeviceRunner.call on the device thread itself would wait for itself")
        return wait_for_fallbacks(self._executor.submit(self.run, forward, batch).result())

    def _run(
        self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], batch: list[T]
    ) -> list[R | Fallback[R]]:
        try:
            results: list[R | Fallback[R]] = list(forward(batch, self.device))
        except Exception as error:  # noqa: BLE001 - classified; everything but OOM leaves here
            failure = classify_failure(error)
            if failure is Failure.DEVICE_LOST:
                self._lose(error)
            if failure is not Failure.OUT_OF_MEMORY or (len(batch) == 1 and self.device == self.fallback_device):
                raise
            message = _summary(error)
        else:
            if len(results) != len(batch):
                raise RuntimeError(f"forward returned {len(results)} results for {len(batch)} items")
            return results
        # Out of memory. Retried only here, after the handler: inside it, the exception's traceback would
        # keep the failed attempt's frames (its inputs and activations) alive through the retry.
        self._release_cached_memory()
        if len(batch) > 1:
            self._on_oom("split")
            middle = len(batch) // 2
            logger.warning("out of memory on %s with a batch of %d (%s); retrying in halves",
                           self.device, len(batch), message)
            return self._run(forward, batch[:middle]) + self._run(forward, batch[middle:])
        self._on_oom("cpu_fallback")
        logger.warning("out of memory on %s with a single item (%s); recomputing it on %s",
                       self.device, message, self.fallback_device)
        return [Fallback(self._fallback_executor.submit(self._run_on_fallback, forward, batch[0]))]

    def _run_on_fallback(self, forward: Callable[[Sequence[T], torch.device], Sequence[R]], item: T) -> R:
        with torch.inference_mode():
            results = list(forward([item], self.fallback_device))
        if len(results) != 1:
            raise RuntimeError(f"forward returned {len(results)} results for 1 item")
        return results[0]

    def _lose(self, error: Exception) -> None:
        lost = DeviceLost(f"unrecoverable error on {self.device}: {_summary(error)}")
        if self._lost is None:
            self._lost = lost
            logger.critical("device %s is lost (%s: %s); the model stops serving", self.device,
                            type(error).__name__, error)
            self._on_device_lost(lost)
        raise lost from error

    def _release_cached_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _bind_thread(self) -> None:
        """Runs first on the device thread. Makes the device the thread's current CUDA device: kernels,
        streams, handles and `empty_cache` that name no device act on it (for `cuda:N` with N > 0 they
        would otherwise go to GPU 0)."""
        self._device_thread = threading.current_thread()
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        else:
            self.cpu_priority.apply()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._fallback_executor.shutdown(wait=False, cancel_futures=True)
