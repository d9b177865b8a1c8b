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

Latency target (`latency_target_ms` > 0, `predictors.latency_target`): the target is on an item's time
from its request's arrival at the server (`submit`'s `spent`: seconds already spent before it was
queued) to its answer, and batch size and wait follow from measurements instead of `max_latency_ms`:
the cost of forward passes (fixed + per item x size, with a margin for its spread), and what a request
spends being preprocessed and after its forward pass (`preprocess_time`, `after_forward_time`, fed by the
caller; the batcher plans the forward passes to end by the target less the latter). A batch takes the
largest number of waiting items (at most `max_batch_size`) whose predicted end keeps the oldest within
that budget while the rest can still make it (all of them, up to `max_batch_size`, when they cannot all
make it anyway), and waits for an announced arrival while a batch one item bigger could still end in
time, but no longer than a request takes to be preprocessed (at least the fixed cost of a pass). With
`max_queue_delay_ms` set as well, a request is refused when work is ahead of it and, serving the queue
and its items first come first served in batches of up to `max_batch_size` after the running pass, it or
an item ahead of it would end after the budget, or when its predicted wait exceeds `max_queue_delay_ms`.
A request that finds the device idle and the queue empty is always taken, so an estimate that became too
pessimistic is corrected by the next measurements. Without a target, `spent` and the two durations are
not used.

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
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from predictors.errors import RequestTimeout, ServiceBusy
from predictors.latency_target import ForwardCost, LatencyTarget, RecentDuration
from predictors.settings import BatchingConfig

logger = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


#: weight of the newest batch in the per-item cost estimate
_COST_SMOOTHING = 0.3


@dataclass
class _Waiting(Generic[P]):
    item: P
    future: asyncio.Future[Any]
    enqueued_at: float
    #: when its request arrived at the server (the batcher's clock): what a latency target counts from
    arrived_at: float
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
        clock: Callable[[], float] = time.monotonic,
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
        #: the time base of enqueue times, deadlines and waits (`time.monotonic`; tests simulate time)
        self._clock = clock
        #: smoothed seconds per item of recent forward passes (None until the first batch)
        self.seconds_per_item: float | None = None
        #: fixed + per-item cost of a forward pass, fitted to recent batches
        self.cost = ForwardCost()
        #: seconds from a request's announcement (`arrivals`) until its items are queued, and from the end
        #: of its forward pass until its answer: observed by the caller, used by a latency target only
        self.preprocess_time = RecentDuration()
        self.after_forward_time = RecentDuration()
        self.target = (LatencyTarget(config.latency_target_ms / 1000.0, config.max_batch_size, self.cost,
                                     self.preprocess_time, self.after_forward_time)
                       if config.latency_target_ms > 0 else None)
        #: predicted end of the forward pass running now (None while none runs)
        self._running_until: float | None = None
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

    def admit(self, count: int, spent: float = 0.0) -> None:
        """Raise `ServiceBusy` if a request of `count` items, `spent` seconds after its arrival, is to be
        refused now (see the module's doc); callers may ask before preparing the items, `submit` asks
        again before queueing them."""
        if len(self._queue) + count > self.config.max_queue:
            raise ServiceBusy(
                f"model '{self.name}' has {len(self._queue)} items queued (limit {self.config.max_queue}); "
                "retry later"
            )
        if not self.config.max_queue_delay_ms:
            return
        limit = self.config.max_queue_delay_ms / 1000.0
        wait = self.estimated_wait_seconds(count) if self.target is None else self._check_target(count, spent)
        if wait > limit:
            raise ServiceBusy(
                f"model '{self.name}' would answer in about {wait:.1f} s (limit {limit:.1f} s); retry later",
                retry_after_seconds=max(1, round(wait)),
            )

    def _check_target(self, count: int, spent: float) -> float:
        """Refuse `count` items `spent` seconds old that the latency target cannot take now; else their
        predicted wait."""
        assert self.target is not None
        now = self._clock()
        ahead = self._ages(now)
        if self._running_until is None and not ahead:
            return 0.0  # the device is idle: it starts at once
        if not self.cost.known:
            raise ServiceBusy(f"model '{self.name}' has not timed a forward pass yet and is busy; retry later")
        busy_for = max(0.0, self._running_until - now) if self._running_until is not None else 0.0
        predicted = self.target.predict(busy_for, ahead, count, own_age=spent)
        if predicted.lateness > 0:
            raise ServiceBusy(
                f"model '{self.name}' cannot answer within its latency target of {self.target.seconds:.2f} s "
                f"(an item would be answered about {self.target.seconds + predicted.lateness:.2f} s after its "
                "arrival); retry later",
                retry_after_seconds=max(1, math.ceil(predicted.lateness)),
            )
        return predicted.wait

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, items: Sequence[P], deadline: float | None = None, spent: float = 0.0) -> list[R]:
        """Queue `items` and wait for their results, in order. `deadline` is a `time.monotonic()` value;
        `spent`: seconds since the request arrived (a latency target counts from its arrival)."""
        self.start()
        try:
            self.admit(len(items), spent)
        except ServiceBusy:
            self.wake()  # an announced request turned away: a batch waiting for it need not
            raise
        loop = asyncio.get_running_loop()
        now = self._clock()
        waiting = [_Waiting(item, loop.create_future(), now, now - spent, deadline) for item in items]
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
        free_since = self._clock()
        while self._queue and (live := self._live_count()) < self.config.max_batch_size and self._arrivals() > 0:
            if self.target is None:
                remaining = self._queue[0].enqueued_at + max_wait - self._clock()
            else:
                oldest = min((w.arrived_at for w in self._queue if not w.future.done()), default=self._clock())
                remaining = self.target.wait_until(free_since, oldest, live + 1) - self._clock()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                return

    def _live_count(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    def _ages(self, now: float) -> list[float]:
        """Seconds since their request arrived, of the items still wanted, in queue order."""
        return [now - w.arrived_at for w in self._queue if not w.future.done()]

    def _take_batch(self) -> list[_Waiting[P]]:
        batch: list[_Waiting[P]] = []
        now = self._clock()
        while self._queue and not _still_wanted(self._queue[0], now):
            self._queue.popleft()
        if not self._queue:
            return batch
        size = self.config.max_batch_size
        if self.target is not None:
            size = self.target.batch_size(self._ages(now))
        while self._queue and len(batch) < size:
            waiting = self._queue.popleft()
            if _still_wanted(waiting, now):
                batch.append(waiting)
        return batch

    async def _run(self, batch: list[_Waiting[P]]) -> None:
        self._on_batch(len(batch))
        started = self._clock()
        # predicted end of this pass (its start while nothing is measured: "busy", for an unknown time)
        self._running_until = started + (self.cost.upper(len(batch)) if self.cost.known else 0.0)
        try:
            results = await self._forward(batch)
        except Exception as error:  # noqa: BLE001 - the error belongs to the batch's items
            self._running_until = None
            await self._isolate(batch, error)
            return
        self._running_until = None
        seconds = self._clock() - started
        self.cost.observe(len(batch), seconds)
        cost = seconds / len(batch)
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
            now = self._clock()
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
