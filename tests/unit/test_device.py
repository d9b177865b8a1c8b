"""The device runner's failure policy, tested on the CPU with the real exception types and messages.

Where a test needs a "GPU", it names a device that is not the CPU (`cuda:0` for `run` called directly,
which never touches CUDA; `meta` where the runner's own device thread runs) and a forward that raises
what CUDA would raise there.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import pytest
import torch

from predictors.device import (
    CPU,
    DeviceLost,
    DeviceReplicas,
    DeviceRunner,
    Failure,
    Fallback,
    classify_failure,
    resolve_device,
    wait_for_fallbacks,
    warmup_batch_sizes,
)

GPU = torch.device("cuda", 0)
META = torch.device("meta")

ILLEGAL_ADDRESS = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below "
    "might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)


class FakeGpuForward:
    """Pretends every device but the CPU is a GPU that runs out of memory above `capacity` items."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, batch: Sequence[int], device: torch.device) -> list[int]:
        self.calls.append((device.type, len(batch), threading.current_thread().name))
        assert torch.is_inference_mode_enabled()
        if device != CPU and len(batch) > self.capacity:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [item + 1 for item in batch]


def test_oom_splits_the_batch_until_it_fits() -> None:
    actions: list[str] = []
    forward = FakeGpuForward(capacity=2)
    runner = DeviceRunner(GPU, on_oom=actions.append)
    assert runner.run(forward, list(range(8))) == [i + 1 for i in range(8)]
    assert [(kind, size) for kind, size, _ in forward.calls] == [
        ("cuda", 8), ("cuda", 4), ("cuda", 2), ("cuda", 2), ("cuda", 4), ("cuda", 2), ("cuda", 2)
    ]
    assert actions.count("split") == 3 and "cpu_fallback" not in actions


def test_the_failed_attempts_tensors_are_freed_before_the_retry() -> None:
    """The retry must not run inside the `except` block, whose traceback holds the failed forward's frame."""
    activations: list[weakref.ref[torch.Tensor]] = []
    alive_at_retry: list[bool] = []

    def forward(batch: Sequence[int], device: torch.device) -> list[int]:
        if activations:
            alive_at_retry.append(activations[-1]() is not None)
        activation = torch.empty(256, 1024)  # 1 MiB the attempt references when it fails
        activations.append(weakref.ref(activation))
        if len(batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return [int(activation.shape[0]) + item for item in batch]

    assert DeviceRunner(GPU).run(forward, [1, 2]) == [257, 258]
    # no gc.collect(): freed by reference counting as soon as the handler was left
    assert alive_at_retry == [False, False]


def test_single_item_oom_is_recomputed_on_the_fallback_thread() -> None:
    actions: list[str] = []
    forward = FakeGpuForward(capacity=0)
    runner = DeviceRunner(GPU, on_oom=actions.append)
    results = runner.run(forward, [10, 20])
    assert all(isinstance(result, Fallback) for result in results)
    assert wait_for_fallbacks(results) == [11, 21]
    fallbacks = [call for call in forward.calls if call[0] == "cpu"]
    assert [size for _, size, _ in fallbacks] == [1, 1]
    assert all(thread.startswith("torch-fallback-cpu") for _, _, thread in fallbacks)
    assert actions.count("cpu_fallback") == 2
    runner.shutdown()


def test_the_device_thread_serves_other_batches_while_a_fallback_runs() -> None:
    release = threading.Event()
    device_threads: list[str] = []

    def forward(batch: Sequence[int], device: torch.device) -> list[int]:
        if device == CPU:
            assert release.wait(10), "the fallback was never released"
            return [-item for item in batch]
        device_threads.append(threading.current_thread().name)
        if batch == [666]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return [item * 10 for item in batch]

    runner = DeviceRunner(META)
    try:
        slow = runner.executor.submit(runner.run, forward, [666]).result(timeout=10)
        assert isinstance(slow[0], Fallback) and not slow[0].future.done()
        # the fallback is still blocked, yet the device thread answers the next batch
        assert runner.call(forward, [1, 2]) == [10, 20]
        assert not slow[0].future.done()
        release.set()
        assert wait_for_fallbacks(slow) == [-666]
        assert device_threads and all(name.startswith("torch-meta") for name in device_threads)
    finally:
        release.set()
        runner.shutdown()


def test_call_from_the_device_thread_is_refused() -> None:
    runner = DeviceRunner(CPU)
    try:
        nested = runner.executor.submit(runner.call, lambda batch, device: list(batch), [1])
        with pytest.raises(RuntimeError, match="wait for itself"):
            nested.result(timeout=10)
    finally:
        runner.shutdown()


def test_other_errors_are_not_swallowed() -> None:
    def broken(batch: Sequence[int], device: torch.device) -> list[int]:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        DeviceRunner(GPU).run(broken, [1])


def test_oom_on_the_cpu_itself_is_raised() -> None:
    def always_oom(batch: Sequence[int], device: torch.device) -> list[int]:
        raise torch.cuda.OutOfMemoryError("out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        DeviceRunner(CPU).run(always_oom, [1])


def test_forward_must_answer_every_item() -> None:
    with pytest.raises(RuntimeError, match="2 items"):
        DeviceRunner(CPU).run(lambda batch, device: [1], [1, 2])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
                                     "capacity of 14.58 GiB of which 3.56 MiB is free."), Failure.OUT_OF_MEMORY),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
         Failure.OUT_OF_MEMORY),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), Failure.OUT_OF_MEMORY),
        (torch.AcceleratorError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously "
                                "reported at some other API call"), Failure.OUT_OF_MEMORY),
        (torch.AcceleratorError(ILLEGAL_ADDRESS), Failure.DEVICE_LOST),
        (RuntimeError(ILLEGAL_ADDRESS), Failure.DEVICE_LOST),
        (torch.AcceleratorError("CUDA error: device-side assert triggered"), Failure.DEVICE_LOST),
        (torch.AcceleratorError("CUDA error: unspecified launch failure"), Failure.DEVICE_LOST),
        (RuntimeError("CUDA error: uncorrectable ECC error encountered"), Failure.DEVICE_LOST),
        (RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, "
                      "opb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)`"), Failure.DEVICE_LOST),
        (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), Failure.DEVICE_LOST),
        (torch.jit.Error("The following operation failed in the TorchScript interpreter.\n"
                         "builtins.RuntimeError: " + ILLEGAL_ADDRESS), Failure.DEVICE_LOST),
        # input-dependent library errors: the context stays usable, the request alone fails
        (RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a "
                      "non-contiguous input."), Failure.OTHER),
        (RuntimeError("CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmEx(...)`"), Failure.OTHER),
        (torch.AcceleratorError("CUDA error: invalid configuration argument"), Failure.OTHER),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"), Failure.OTHER),
        (ValueError("an illegal memory access was encountered"), Failure.OTHER),
    ],
)
def test_classify_failure(error: BaseException, expected: Failure) -> None:
    assert classify_failure(error) is expected


class ExplodingNet(torch.nn.Module):
    """A real module whose forward hits an unrecoverable CUDA error after real work."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.message = message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.linear(x)
        raise torch.AcceleratorError(self.message)


def test_an_unrecoverable_error_loses_the_device_for_good() -> None:
    net = ExplodingNet(ILLEGAL_ADDRESS)
    calls: list[int] = []
    lost: list[DeviceLost] = []
    oom: list[str] = []

    def forward(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        calls.append(len(batch))
        return list(net(torch.stack(list(batch))))

    runner = DeviceRunner(GPU, on_oom=oom.append, on_device_lost=lost.append)
    with pytest.raises(DeviceLost, match="illegal memory access") as raised:
        runner.run(forward, [torch.zeros(4)] * 4)
    assert isinstance(raised.value.__cause__, torch.AcceleratorError)
    assert calls == [4] and oom == []  # neither split nor recomputed on the CPU
    assert len(lost) == 1
    with pytest.raises(DeviceLost, match="lost earlier"):
        runner.run(forward, [torch.zeros(4)])
    assert calls == [4] and len(lost) == 1  # the device is not touched again


def test_cublas_allocation_failure_is_handled_like_out_of_memory() -> None:
    def forward(batch: Sequence[int], device: torch.device) -> list[int]:
        if len(batch) > 1:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return list(batch)

    actions: list[str] = []
    assert DeviceRunner(GPU, on_oom=actions.append).run(forward, [1, 2]) == [1, 2]
    assert actions == ["split"]


def test_replicas_keep_the_load_time_cpu_modules_and_copy_them_to_the_primary() -> None:
    layer = torch.nn.Linear(2, 2).eval()
    weight_storage = layer.weight.data_ptr()
    replicas = DeviceReplicas({"net": layer}, META)
    cpu = replicas.on(CPU)["net"]
    primary = replicas.on(META)["net"]
    assert cpu is layer and layer.weight.device == CPU and layer.weight.data_ptr() == weight_storage
    assert primary is not layer and primary.weight.device == META and not primary.training


def test_replicas_on_the_cpu_hold_one_copy() -> None:
    layer = torch.nn.Linear(2, 2)
    replicas = DeviceReplicas({"net": layer}, CPU)
    assert replicas.on(CPU)["net"] is layer
    with pytest.raises(ValueError, match="no replica on meta"):
        replicas.on(META)


def test_replicas_refuse_modules_that_are_not_on_the_cpu() -> None:
    with pytest.raises(ValueError, match="must be given on the CPU"):
        DeviceReplicas({"net": torch.nn.Linear(2, 2).to(META)}, META)


@pytest.mark.parametrize(
    ("device", "max_batch_size", "sizes"),
    [
        (CPU, 8, [1]),
        (GPU, 8, [1, 2, 4, 8]),
        (GPU, 6, [1, 2, 4, 6]),
        (GPU, 1, [1]),
        (torch.device("cuda", 1), 32, [1, 2, 4, 8, 16, 32]),
    ],
)
def test_warmup_batch_sizes(device: torch.device, max_batch_size: int, sizes: list[int]) -> None:
    assert warmup_batch_sizes(device, max_batch_size) == sizes


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else CPU
    assert resolve_device("auto") == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


PRIORITY_CHILD = r"""
import json, os, sys, torch
from predictors.device import DeviceRunner, LowerPriority

def niceness_and_policy(task):
    with open(f"/proc/self/task/{task}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return [int(fields[16]), int(fields[38])]  # fields 19 and 41 of proc(5): nice, policy

torch.set_num_threads(2)
before = set(os.listdir("/proc/self/task"))
runner = DeviceRunner(torch.device("cpu"), cpu_priority=LowerPriority(4, idle=sys.argv[1] == "idle"))
a = torch.randn(512, 512)
runner.executor.submit(lambda: [torch.mm(a, a) for _ in range(20)]).result()  # starts torch's threads there
started = set(os.listdir("/proc/self/task")) - before
print(json.dumps({"main": niceness_and_policy(str(os.getpid())),
                  "started": sorted(niceness_and_policy(t) for t in started)}))
"""


@pytest.mark.parametrize("idle", [False, True], ids=["nice", "nice+idle"])
def test_forward_passes_on_a_cpu_run_at_the_lower_priority_and_so_do_the_torch_threads_they_start(idle: bool) -> None:
    """`cpu_priority`: the device thread and the intra-op threads torch starts from it, niced by 4 and, with
    `idle`, under SCHED_IDLE (measured in a child: the threads a process starts are its own business, and the
    test process's torch already has its pool)."""
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PRIORITY_CHILD, "idle" if idle else "nice"], capture_output=True,
                          text=True, timeout=120, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    base, base_policy = measured["main"]
    assert base <= 15 and base_policy == os.SCHED_OTHER, measured
    # the device thread, plus at least one torch worker thread it started; nothing else was started
    expected = [base + 4, os.SCHED_IDLE if idle else os.SCHED_OTHER]
    assert len(measured["started"]) >= 2 and measured["started"] == [expected] * len(measured["started"]), measured
