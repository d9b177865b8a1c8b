import asyncio
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from predictors.batching import Batcher
from predictors.device import DeviceLost
from predictors.errors import RequestTimeout, ServiceBusy
from predictors.runtime import is_item_failure
from predictors.settings import BatchingConfig


class RecordingModel:
    """Doubles each item; remembers every batch it was given and can be made slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, batch: Sequence[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(batch))
        time.sleep(self.delay)
        return [item * 2 for item in batch]


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")
    yield pool
    pool.shutdown(wait=True)


async def test_concurrent_requests_share_a_batch_and_get_their_own_results(executor) -> None:
    model = RecordingModel()
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=8, max_latency_ms=50, max_queue=64))
    results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(4)))
    assert results == [[2 * i, 2 * (i + 100)] for i in range(4)]
    assert len(model.batches) == 1 and sorted(model.batches[0]) == sorted(
        v for i in range(4) for v in (i, i + 100))
    assert model.threads == {"device_0"}
    await batcher.stop()


async def test_a_full_batch_leaves_without_waiting_for_the_latency_budget(executor) -> None:
    model = RecordingModel()
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=4, max_latency_ms=5_000, max_queue=64))
    started = time.monotonic()
    assert await batcher.submit([1, 2, 3, 4]) == [2, 4, 6, 8]
    assert time.monotonic() - started < 1.0
    await batcher.stop()


async def test_waiting_for_an_announced_request_lasts_at_most_the_latency_budget(executor) -> None:
    model = RecordingModel()
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=8, max_latency_ms=100, max_queue=64),
                      arrivals=lambda: 1)
    started = time.monotonic()
    assert await batcher.submit([5]) == [10]
    elapsed = time.monotonic() - started
    assert 0.08 <= elapsed < 1.0
    await batcher.stop()


async def test_batches_never_exceed_max_batch_size(executor) -> None:
    model = RecordingModel(delay=0.01)
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=3, max_latency_ms=20, max_queue=100))
    results = await asyncio.gather(*(batcher.submit(list(range(i, i + 5))) for i in range(0, 50, 5)))
    assert [v for r in results for v in r] == [2 * v for v in range(50)]
    assert max(len(b) for b in model.batches) <= 3
    await batcher.stop()


async def test_max_batch_size_one_runs_items_alone(executor) -> None:
    model = RecordingModel()
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=1, max_latency_ms=50, max_queue=64))
    assert await asyncio.gather(batcher.submit([1]), batcher.submit([2, 3])) == [[2], [4, 6]]
    assert all(len(b) == 1 for b in model.batches)
    await batcher.stop()


async def test_full_queue_refuses_at_once(executor) -> None:
    model = RecordingModel(delay=0.3)
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=2, max_latency_ms=0, max_queue=4))
    first = asyncio.create_task(batcher.submit([1, 2]))  # taken into a batch, running
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(batcher.submit([3, 4, 5, 6]))  # fills the queue
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(ServiceBusy) as error:
        await batcher.submit([7])
    assert time.monotonic() - started < 0.05
    assert error.value.headers["Retry-After"]
    assert await first == [2, 4] and await waiting == [6, 8, 10, 12]
    await batcher.stop()


async def test_deadline_passed_while_queued_drops_the_work(executor) -> None:
    model = RecordingModel(delay=0.3)
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=1, max_latency_ms=0, max_queue=64))
    busy = asyncio.create_task(batcher.submit([1]))
    await asyncio.sleep(0.05)
    with pytest.raises(RequestTimeout):
        await batcher.submit([99], deadline=time.monotonic() + 0.1)
    assert await busy == [2]
    await asyncio.sleep(0.4)
    assert [99] not in model.batches  # never run
    await batcher.stop()


async def test_cancelled_requests_are_not_run_and_do_not_disturb_others(executor) -> None:
    model = RecordingModel(delay=0.2)
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=2, max_latency_ms=0, max_queue=64))
    running = asyncio.create_task(batcher.submit([1, 2]))
    await asyncio.sleep(0.05)
    doomed = asyncio.create_task(batcher.submit([50, 51]))
    survivor = asyncio.create_task(batcher.submit([3]))
    await asyncio.sleep(0.01)
    doomed.cancel()
    assert await running == [2, 4]
    assert await survivor == [6]
    assert all(50 not in b and 51 not in b for b in model.batches)
    await batcher.stop()


async def test_a_failing_batch_fails_only_its_requests(executor) -> None:
    def flaky(batch: Sequence[int]) -> list[int]:
        if 13 in batch:
            raise ValueError("unlucky")
        return [v * 2 for v in batch]

    batcher = Batcher("m", flaky, executor, BatchingConfig(max_batch_size=1, max_latency_ms=0, max_queue=64))
    with pytest.raises(ValueError):
        await batcher.submit([13])
    assert await batcher.submit([4]) == [8]
    await batcher.stop()


async def test_many_concurrent_mixed_size_requests_get_exactly_their_results(executor) -> None:
    model = RecordingModel(delay=0.002)
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=8, max_latency_ms=2, max_queue=10_000))
    rng = random.Random(7)
    requests = [[rng.randrange(1_000_000) for _ in range(rng.randrange(1, 6))] for _ in range(200)]

    async def call(items: list[int]) -> list[int]:
        await asyncio.sleep(rng.random() * 0.01)
        return await batcher.submit(items)

    results = await asyncio.gather(*(call(r) for r in requests))
    assert results == [[2 * v for v in r] for r in requests]
    assert any(len(b) > 1 for b in model.batches)
    await batcher.stop()


async def test_a_partial_batch_leaves_at_once_when_nobody_else_is_coming(executor) -> None:
    model = RecordingModel()
    config = BatchingConfig(max_batch_size=8, max_latency_ms=2_000, max_queue=64)
    expected = {"arrivals": 0}
    batcher = Batcher("m", model, executor, config, arrivals=lambda: expected["arrivals"])
    started = time.monotonic()
    assert await batcher.submit([1]) == [2]
    assert time.monotonic() - started < 0.5
    # With another request announced, the batch waits for it and both share one forward pass.
    expected["arrivals"] = 1
    first = asyncio.create_task(batcher.submit([10]))
    await asyncio.sleep(0.2)
    assert not first.done()
    expected["arrivals"] = 0
    assert await asyncio.gather(first, batcher.submit([20])) == [[20], [40]]
    assert model.batches[-1] == [10, 20]
    await batcher.stop()


async def test_an_announced_arrival_that_fails_stops_the_wait(executor) -> None:
    model = RecordingModel()
    expected = {"arrivals": 1}
    batcher = Batcher("m", model, executor, BatchingConfig(max_batch_size=8, max_latency_ms=5_000),
                      arrivals=lambda: expected["arrivals"])
    waiting = asyncio.create_task(batcher.submit([3]))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    expected["arrivals"] = 0
    batcher.wake()
    assert await asyncio.wait_for(waiting, 1.0) == [6]
    await batcher.stop()


async def test_estimated_wait_bounds_the_queue(executor) -> None:
    model = RecordingModel(delay=0.1)  # 0.1 s per forward pass of one item
    config = BatchingConfig(max_batch_size=1, max_latency_ms=0, max_queue=100, max_queue_delay_ms=350)
    batcher = Batcher("m", model, executor, config)
    assert batcher.policy.estimated_wait_seconds(5) == 0.0  # nothing measured yet: nothing refused
    await batcher.submit([1])
    assert 0.08 < batcher.policy.seconds_per_item < 0.5
    running = asyncio.create_task(batcher.submit([2]))
    await asyncio.sleep(0.02)
    queued = asyncio.create_task(batcher.submit([3, 4]))
    await asyncio.sleep(0.01)
    with pytest.raises(ServiceBusy, match="would answer in about") as error:
        await batcher.submit([5, 6])
    assert int(error.value.headers["Retry-After"]) >= 1
    assert await running == [4] and await queued == [6, 8]
    await batcher.stop()


class PoisonModel(RecordingModel):
    """Doubles each item but raises on a batch that holds one of `poison` (as a model bug on one input)."""

    def __init__(self, poison: set[int], delay: float = 0.0) -> None:
        super().__init__(delay)
        self.poison = poison

    def __call__(self, batch: Sequence[int]) -> list[int]:
        results = super().__call__(batch)
        bad = sorted(self.poison.intersection(batch))
        if bad:
            raise ValueError(f"cannot process item {bad[0]}")
        return results


def poison_batcher(model, executor, poisoned: list[int], **config) -> Batcher:
    settings = {"max_batch_size": 8, "max_latency_ms": 200, "max_queue": 64} | config
    return Batcher("m", model, executor, BatchingConfig(**settings), on_poison_item=lambda error: poisoned.append(1))


async def test_a_poison_item_fails_only_its_request_and_costs_at_most_2_log2_n_extra_passes(executor) -> None:
    model = PoisonModel({5})
    poisoned: list[int] = []
    batcher = poison_batcher(model, executor, poisoned)
    outcomes = await asyncio.gather(*(batcher.submit([i]) for i in range(8)), return_exceptions=True)
    assert len(model.batches[0]) == 8, "the eight requests did not share a batch"
    assert isinstance(outcomes[5], ValueError) and str(outcomes[5]) == "cannot process item 5"
    assert [o for i, o in enumerate(outcomes) if i != 5] == [[2 * i] for i in range(8) if i != 5]
    assert poisoned == [1]
    assert len(model.batches) - 1 <= 2 * 3  # one batch of 8, then halves: 4+4, 2+2, 1+1
    assert [5] in model.batches  # the poison item ran alone: its error is its own
    await batcher.stop()


async def test_items_of_a_request_sharing_a_batch_with_poison_keep_their_order(executor) -> None:
    model = PoisonModel({13, 42})
    poisoned: list[int] = []
    batcher = poison_batcher(model, executor, poisoned)
    healthy, sick, other_sick = await asyncio.gather(
        batcher.submit([1, 2, 3]), batcher.submit([4, 13, 5]), batcher.submit([42, 6]), return_exceptions=True
    )
    assert healthy == [2, 4, 6]
    assert isinstance(sick, ValueError) and "13" in str(sick)
    assert isinstance(other_sick, ValueError) and "42" in str(other_sick)
    assert poisoned == [1, 1]
    # the sick request's healthy items were answered too (they ran in a passing half), never lost
    assert await batcher.submit([7]) == [14]
    await batcher.stop()


async def test_a_failing_batch_of_one_counts_one_poison_item(executor) -> None:
    poisoned: list[int] = []
    batcher = poison_batcher(PoisonModel({9}), executor, poisoned, max_batch_size=1)
    with pytest.raises(ValueError):
        await batcher.submit([9])
    assert poisoned == [1]
    await batcher.stop()


async def test_device_errors_fail_the_whole_batch_without_retries(executor) -> None:
    class DeviceGone(RuntimeError):
        pass

    calls: list[list[int]] = []

    def broken_device(batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        raise DeviceGone("device lost")

    poisoned: list[int] = []
    batcher = Batcher("m", broken_device, executor, BatchingConfig(max_batch_size=8, max_latency_ms=200),
                      isolates=lambda error: not isinstance(error, DeviceGone),
                      on_poison_item=lambda error: poisoned.append(1))
    outcomes = await asyncio.gather(*(batcher.submit([i]) for i in range(4)), return_exceptions=True)
    assert all(isinstance(o, DeviceGone) for o in outcomes)
    assert calls == [[0, 1, 2, 3]] and poisoned == []
    await batcher.stop()


async def test_a_deadline_that_passes_while_bisecting_ends_the_retries_for_that_request(executor) -> None:
    model = PoisonModel({0}, delay=0.15)
    poisoned: list[int] = []
    batcher = poison_batcher(model, executor, poisoned, max_latency_ms=100)
    started = time.monotonic()
    hurried = asyncio.create_task(batcher.submit([1], deadline=started + 0.25))
    patient = [asyncio.create_task(batcher.submit([i])) for i in (0, 2, 3)]
    with pytest.raises(RequestTimeout):
        await hurried
    assert time.monotonic() - started < 0.4
    outcomes = await asyncio.gather(*patient, return_exceptions=True)
    assert isinstance(outcomes[0], ValueError) and outcomes[1:] == [[4], [6]]
    # after the deadline, item 1 ran in no further forward pass
    assert sum(1 in batch for batch in model.batches) <= 2
    await batcher.stop()


@pytest.mark.parametrize("device_error", [torch.cuda.OutOfMemoryError("CUDA out of memory"),
                                          DeviceLost("illegal memory access")], ids=["oom", "device-lost"])
async def test_the_models_policy_leaves_device_failures_to_the_device_runner(executor, device_error) -> None:
    calls: list[list[int]] = []

    def failing(batch: Sequence[int]) -> list[int]:
        calls.append(list(batch))
        raise device_error

    batcher = Batcher("m", failing, executor, BatchingConfig(max_batch_size=4, max_latency_ms=200),
                      isolates=is_item_failure)
    outcomes = await asyncio.gather(*(batcher.submit([i]) for i in range(4)), return_exceptions=True)
    assert all(outcome is device_error for outcome in outcomes)
    assert calls == [[0, 1, 2, 3]]  # not retried in halves
    assert is_item_failure(ValueError("a bug one input triggers"))
    await batcher.stop()
