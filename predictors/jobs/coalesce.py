"""`Coalescing`: calls made close together go out as one call of a function taking them all.

The jobs of one batch end within a few milliseconds of each other; writing each outcome in a round trip
of its own costs every job a Redis request and a socket write on the event loop, on the same cores as the
forward pass (docs/performance.md, "Asynchronous jobs"). Gathered for a few milliseconds, a batch's
outcomes go to Redis in one pipeline instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class Coalescing(Generic[A, R]):
    """``await coalescing(arg)`` is ``many([arg, ...])[i]`` for the calls made within `window` seconds of
    the first one. An element of `many`'s answer that is an exception is raised to its caller only; an
    exception of `many` itself to every caller of that round. A caller that is cancelled while waiting
    does not withdraw its argument (its round may have gone out already)."""

    def __init__(self, many: Callable[[list[A]], Awaitable[Sequence[R | BaseException]]], window: float) -> None:
        self.many = many
        self.window = window
        self._waiting: list[tuple[A, asyncio.Future[R]]] = []
        self._round: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, arg: A) -> R:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._waiting.append((arg, answer))
        if self._round is None:
            self._round = loop.call_later(self.window, self._send)
        return await answer

    async def settled(self) -> None:
        """Send what waits now and wait until every round has its answer (at shutdown)."""
        if self._round is not None:
            self._round.cancel()
            self._send()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send(self) -> None:
        waiting, self._waiting, self._round = self._waiting, [], None
        task = asyncio.get_running_loop().create_task(self._answer(waiting))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _answer(self, waiting: list[tuple[A, asyncio.Future[R]]]) -> None:
        try:
            answers = await self.many([arg for arg, _ in waiting])
        except Exception as error:  # noqa: BLE001 - each caller gets it, as it would from its own call
            for _, answer in waiting:
                if not answer.done():
                    answer.set_exception(error)
            return
        for (_, answer), value in zip(waiting, answers, strict=True):
            if answer.done():  # its caller was cancelled
                continue
            if isinstance(value, BaseException):
                answer.set_exception(value)
            else:
                answer.set_result(value)
