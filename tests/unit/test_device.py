from collections.abc import Sequence

import pytest
import torch

from predictors.device import CPU, DeviceReplicas, DeviceRunner, resolve_device

GPU = torch.device("cuda", 0)


class FakeGpuForward:
    """Pretends `device` is a GPU that runs out of memory above `capacity` items per forward."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.calls: list[tuple[str, int]] = []

    def __call__(self, batch: Sequence[int], device: torch.device) -> list[int]:
        self.calls.append((device.type, len(batch)))
        assert torch.is_inference_mode_enabled()
        if device.type == "cuda" and len(batch) > self.capacity:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [item + 1 for item in batch]


def test_oom_splits_the_batch_until_it_fits() -> None:
    actions: list[str] = []
    forward = FakeGpuForward(capacity=2)
    runner = DeviceRunner(GPU, on_oom=actions.append)
    assert runner.run(forward, list(range(8))) == [i + 1 for i in range(8)]
    assert forward.calls == [("cuda", 8), ("cuda", 4), ("cuda", 2), ("cuda", 2), ("cuda", 4), ("cuda", 2),
                             ("cuda", 2)]
    assert actions.count("split") == 3 and "cpu_fallback" not in actions


def test_oom_on_a_single_item_falls_back_to_the_cpu() -> None:
    actions: list[str] = []
    forward = FakeGpuForward(capacity=0)
    runner = DeviceRunner(GPU, on_oom=actions.append)
    assert runner.run(forward, [10, 20]) == [11, 21]
    assert ("cpu", 1) in forward.calls
    assert actions.count("cpu_fallback") == 2


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


def test_replicas_copy_modules_lazily_and_once() -> None:
    layer = torch.nn.Linear(2, 2)
    replicas = DeviceReplicas({"net": layer}, torch.device("meta"))
    assert replicas.on(torch.device("meta"))["net"] is layer
    copy = replicas.on(CPU)["net"]
    assert copy is not layer and next(copy.parameters()).device.type == "cpu"
    assert replicas.on(CPU)["net"] is copy


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else CPU
    assert resolve_device("auto") == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
