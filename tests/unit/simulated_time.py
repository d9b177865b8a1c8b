"""Simulated time for the batcher: an event loop whose clock jumps to its next timer instead of sleeping,
and a device whose forward passes take a known number of simulated seconds.

The `Batcher` runs unchanged on it (its ``clock`` is the loop's), so a test of minutes of traffic takes
a fraction of a second of real time and gives the same answer on a busy machine as on a quiet one.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    """The real selector (the loop's self-pipe still works) that never blocks: a wait moves the clock."""

    def __init__(self, loop: SimulatedLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("the simulation has nothing left to wait for (a task waits forever)")
        self._loop.now += timeout
        return []

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Any:
        return self._inner.get_map()


class SimulatedLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


class SimulatedDevice(Executor):
    """Runs each submitted batch at once but answers it `cost(len(batch))` simulated seconds after the
    previous one ended (one device thread: passes run one after another)."""

    def __init__(self, loop: SimulatedLoop, cost: Callable[[int], float]) -> None:
        self._loop = loop
        self._cost = cost
        self._free_at = 0.0
        #: (start, end, items) of every forward pass
        self.passes: list[tuple[float, float, list[Any]]] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        (batch,) = args
        future: Future[T] = Future()
        start = max(self._loop.now, self._free_at)
        end = start + self._cost(len(batch))
        self._free_at = end
        self.passes.append((start, end, list(batch)))
        try:
            result = fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - handed to the caller as the pass's outcome
            self._loop.call_at(end, future.set_exception, error)
        else:
            self._loop.call_at(end, future.set_result, result)
        return future


class SharedProcessor(SimulatedDevice):
    """A device that is also the processor of other work (a CPU: decoding shares it with the forward
    passes): `occupy` queues such work with the passes, first come first served."""

    async def occupy(self, seconds: float) -> None:
        """Run `seconds` of other work after what is queued before it; returns when it is done."""
        start = max(self._loop.now, self._free_at)
        self._free_at = start + seconds
        await asyncio.sleep(self._free_at - self._loop.now)


def run(main: Callable[[SimulatedLoop], Coroutine[Any, Any, T]]) -> T:
    """Run `main(loop)` on a fresh simulated loop."""
    loop = SimulatedLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


def poisson_arrivals(rate: float, count: int, seed: int, start: float = 0.0) -> list[float]:
    """`count` arrival times of a Poisson process at `rate` per second."""
    import random

    rng = random.Random(seed)
    times, now = [], start
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
