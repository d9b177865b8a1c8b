"""In-process dynamic batching with a bounded queue and per-request deadlines.

Items from all requests of a model wait in one FIFO queue. A batch leaves when `max_batch_size` items
wait or the oldest has waited `max_latency_ms`; it runs as one forward pass on the model's device
thread and each result goes back to the future of the item it belongs to. While a batch runs, new
requests keep being preprocessed in the worker pool and queue up for the next one.

A partial batch does not wait for company that cannot come: when no other request is being
preprocessed (`arrivals() == 0`), it leaves at once instead of sitting out `max_latency_ms`.

Back-pressure: beyond `max_queue` waiting items a request is refused at once (`ServiceBusy`); with
`max_queue_delay_ms` set, so is a request whose estimated wait (queued items x the measured
per-item cost of recent batches) exceeds it, which bounds latency on slow devices where an item count
alone cannot. An item whose request was cancelled or whose deadline passed before its batch started
is dropped, never run.

Poison items: when a forward pass raises, the batch is retried in halves until the failing item(s)
stand alone; only their requests get the error and every other item its normal result. Errors for which
`isolates(error)` is false (the device's own failures: CUDA out-of-memory, which the device runner has
already split, or a lost device) fail the whole batch at once. Cost: with one poison item among n, at
most 2*log2(n) extra forward passes; if every item fails, 2n-2. Items whose request was cancelled or
timed out meanwhile are dropped from the retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from predictors.errors import RequestTimeout, ServiceBusy

logger = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 8
    max_latency_ms: float = 5.0
    max_queue: int = 64
    #: refuse requests whose estimated queue wait exceeds this; 0 disables the estimate
    max_queue_delay_ms: float = 0.0


#: weight of the newest batch in the per-item cost estimate
_COST_SMOOTHING = 0.3


@dataclass
class _Waiting(Generic[P]):
    item: P
    future: asyncio.Future[Any]
    enqueued_at: float
    deadline: float | None


class Batcher(Generic[P, R]):
    """Groups queued items into batches for `run_batch`, which is called on `executor`."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[Sequence[P]], Sequence[R]],
        executor: Executor,
        config: BatchingConfig,
        on_batch: Callable[[int], None] = lambda size: None,
        on_queue_change: Callable[[int], None] = lambda depth: None,
        arrivals: Callable[[], int] = lambda: 0,
        isolates: Callable[[BaseException], bool] = lambda error: True,
        on_poison_item: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        self.name = name
        self.config = config
        self._run_batch = run_batch
        self._executor = executor
        self._on_batch = on_batch
        self._on_queue_change = on_queue_change
        self._arrivals = arrivals
        self._isolates = isolates
        self._on_poison_item = on_poison_item
        #: smoothed seconds per item of recent forward passes (None until the first batch)
        self.seconds_per_item: float | None = None
        self._queue: deque[_Waiting[P]] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    def wake(self) -> None:
        """Re-check the wait for a fuller batch (an expected arrival will not come)."""
        self._arrived.set()

    def estimated_wait_seconds(self, extra_items: int = 0) -> float:
        """Time until `extra_items` more items would be done, from the measured per-item cost."""
        if self.seconds_per_item is None:
            return 0.0
        return (len(self._queue) + extra_items) * self.seconds_per_item

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, items: Sequence[P], deadline: float | None = None) -> list[R]:
        """Queue `items` and wait for their results, in order. `deadline` is a `time.monotonic()` value."""
        self.start()
        if len(self._queue) + len(items) > self.config.max_queue:
            raise ServiceBusy(
                f"model '{self.name}' has {len(self._queue)} items queued (limit {self.config.max_queue}); "
                "retry later"
            )
        wait = self.estimated_wait_seconds(len(items))
        if self.config.max_queue_delay_ms and wait * 1000.0 > self.config.max_queue_delay_ms:
            raise ServiceBusy(
                f"model '{self.name}' would answer in about {wait:.1f} s (limit "
                f"{self.config.max_queue_delay_ms / 1000.0:.1f} s); retry later",
                retry_after_seconds=max(1, round(wait)),
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        waiting = [_Waiting(item, loop.create_future(), now, deadline) for item in items]
        self._queue.extend(waiting)
        self._on_queue_change(len(self._queue))
        self._arrived.set()
        futures = [w.future for w in waiting]
        try:
            if deadline is None:
                return await asyncio.gather(*futures)
            return await asyncio.wait_for(asyncio.gather(*futures), timeout=max(0.0, deadline - now))
        except asyncio.TimeoutError:
            raise RequestTimeout(f"the request's deadline passed before model '{self.name}' answered") from None
        finally:
            # Cancelled futures are skipped when their turn comes: the work is dropped, not run.
            for future in futures:
                if not future.done():
                    future.cancel()

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._wait_for_fuller_batch()
            batch = self._take_batch()
            self._on_queue_change(len(self._queue))
            if batch:
                await self._run(batch)

    async def _wait_for_fuller_batch(self) -> None:
        max_wait = self.config.max_latency_ms / 1000.0
        while self._queue and self._live_count() < self.config.max_batch_size and self._arrivals() > 0:
            remaining = self._queue[0].enqueued_at + max_wait - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                return

    def _live_count(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    def _take_batch(self) -> list[_Waiting[P]]:
        batch: list[_Waiting[P]] = []
        now = time.monotonic()
        while self._queue and len(batch) < self.config.max_batch_size:
            waiting = self._queue.popleft()
            if _still_wanted(waiting, now):
                batch.append(waiting)
        return batch

    async def _run(self, batch: list[_Waiting[P]]) -> None:
        self._on_batch(len(batch))
        started = time.monotonic()
        try:
            results = await self._forward(batch)
        except Exception as error:  # noqa: BLE001 - the error belongs to the batch's items
            await self._isolate(batch, error)
            return
        cost = (time.monotonic() - started) / len(batch)
        previous = self.seconds_per_item
        self.seconds_per_item = cost if previous is None else previous + _COST_SMOOTHING * (cost - previous)
        self._resolve(batch, results)

    async def _isolate(self, failed: list[_Waiting[P]], error: Exception) -> None:
        """`failed` raised `error`: run its halves (recursively) until each failing item stands alone."""
        if not self._isolates(error):
            self._fail(failed, error)
            return
        if len(failed) == 1:
            self._on_poison_item(error)
            self._fail(failed, error)
            return
        logger.debug("model %s: a batch of %d failed (%s); retrying it in halves", self.name, len(failed),
                     type(error).__name__)
        middle = len(failed) // 2
        for half in (failed[:middle], failed[middle:]):
            now = time.monotonic()
            half = [waiting for waiting in half if _still_wanted(waiting, now)]
            if not half:
                continue
            try:
                results = await self._forward(half)
            except Exception as half_error:  # noqa: BLE001 - the error belongs to the half's items
                await self._isolate(half, half_error)
                continue
            self._resolve(half, results)

    async def _forward(self, batch: list[_Waiting[P]]) -> Sequence[R]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_batch, [w.item for w in batch])

    @staticmethod
    def _fail(batch: list[_Waiting[P]], error: BaseException) -> None:
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_exception(error)

    @staticmethod
    def _resolve(batch: list[_Waiting[P]], results: Sequence[R]) -> None:
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)


def _still_wanted(waiting: _Waiting[Any], now: float) -> bool:
    """Whether the item's request still waits for it; one whose deadline has passed gets its timeout."""
    if waiting.future.done():  # cancelled: the request gave up or timed out
        return False
    if waiting.deadline is not None and waiting.deadline <= now:
        waiting.future.set_exception(RequestTimeout("the request's deadline passed before its turn"))
        return False
    return True
