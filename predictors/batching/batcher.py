"""In-process dynamic batching with a bounded queue and per-request deadlines.

Items from all requests of a model wait in one FIFO queue. A batch leaves when its policy says so
(`predictors.batching.policies`: how many items, how long a partial batch waits); it runs as one forward
pass on the model's device thread and each result goes back to the future of the item it belongs to. While
a batch runs, new requests keep being preprocessed in the worker pool and queue up for the next one.

A partial batch does not wait for company that cannot come: when no other request is being preprocessed
(`arrivals() == 0`), it leaves at once; otherwise it waits until the policy's `wait_until` or an arrival.

Back-pressure: beyond `max_queue` waiting items a request is refused at once (`ServiceBusy`), and the
policy may refuse earlier (a predicted wait over `max_queue_delay_ms`, a latency target it cannot meet).
An item whose request was cancelled or whose deadline passed before its batch started is dropped, never run.

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

from predictors.batching.policies import BatchPolicy, QueueState, policy_for
from predictors.errors import RequestTimeout, ServiceBusy
from predictors.settings import BatchingConfig

logger = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass
class _Waiting(Generic[P]):
    item: P
    future: asyncio.Future[Any]
    enqueued_at: float
    #: when its request arrived at the server (the batcher's clock): what a latency target counts from
    arrived_at: float
    deadline: float | None


class Batcher(Generic[P, R]):
    """Groups queued items into batches for `run_batch`, which is called on `executor`, as `policy` (by
    default the one `config` asks for) decides."""

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
        policy: BatchPolicy | None = None,
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
        self.policy = policy if policy is not None else policy_for(config)
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

    def observe_preprocess(self, seconds: float) -> None:
        """A request's time from its announcement (`arrivals`) until its items were queued."""
        self.policy.observe_preprocess(seconds)

    def observe_after_forward(self, seconds: float) -> None:
        """A request's time from the end of its last forward pass until its answer."""
        self.policy.observe_after_forward(seconds)

    def admit(self, count: int, spent: float = 0.0) -> None:
        """Raise `ServiceBusy` if a request of `count` items, `spent` seconds after its arrival, is to be
        refused now (see the module's doc); callers may ask before preparing the items, `submit` asks
        again before queueing them."""
        if len(self._queue) + count > self.config.max_queue:
            raise ServiceBusy(
                f"model '{self.name}' has {len(self._queue)} items queued (limit {self.config.max_queue}); "
                "retry later"
            )
        self.policy.refuse(self.name, self._state(self._clock()), count, spent)

    def _state(self, now: float) -> QueueState:
        live = [w for w in self._queue if not w.future.done()]
        return QueueState(
            now=now, queued=len(self._queue), ages=[now - w.arrived_at for w in live],
            first_enqueued_at=self._queue[0].enqueued_at if self._queue else None,
            oldest_arrived_at=min((w.arrived_at for w in live), default=now),
            running_until=self._running_until,
        )

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
        free_since = self._clock()
        while self._queue and self._live_count() < self.config.max_batch_size and self._arrivals() > 0:
            now = self._clock()
            remaining = self.policy.wait_until(self._state(now), free_since) - now
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
        now = self._clock()
        while self._queue and not _still_wanted(self._queue[0], now):
            self._queue.popleft()
        if not self._queue:
            return batch
        size = self.policy.batch_size(self._state(now))
        while self._queue and len(batch) < size:
            waiting = self._queue.popleft()
            if _still_wanted(waiting, now):
                batch.append(waiting)
        return batch

    async def _run(self, batch: list[_Waiting[P]]) -> None:
        self._on_batch(len(batch))
        started = self._clock()
        # predicted end of this pass (its start while nothing is measured: "busy", for an unknown time)
        self._running_until = started + self.policy.pass_seconds(len(batch))
        try:
            results = await self._forward(batch)
        except Exception as error:  # noqa: BLE001 - the error belongs to the batch's items
            self._running_until = None
            await self._isolate(batch, error)
            return
        self._running_until = None
        self.policy.observe_pass(len(batch), self._clock() - started)
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
