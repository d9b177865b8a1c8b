"""`Coalescing`: calls made close together go out as one call, each caller gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from predictors.jobs.coalesce import Coalescing


class Recorder:
    """A `many` that records its calls; an argument < 0 fails on its own, 13 fails the whole call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    async def __call__(self, args: list[int]) -> list[int | BaseException]:
        self.calls.append(args)
        await asyncio.sleep(0)
        if 13 in args:
            raise ConnectionError("the whole round failed")
        return [ValueError(f"bad {arg}") if arg < 0 else arg * 10 for arg in args]


async def test_calls_within_the_window_go_out_together_and_each_gets_its_answer() -> None:
    many = Recorder()
    coalescing = Coalescing(many, window=0.02)
    first = asyncio.gather(*(coalescing(arg) for arg in (1, 2, 3)))
    await asyncio.sleep(0.005)
    late_in_window = asyncio.ensure_future(coalescing(4))
    assert await first == [10, 20, 30] and await late_in_window == 40
    assert many.calls == [[1, 2, 3, 4]]
    await asyncio.sleep(0.03)
    assert await coalescing(5) == 50  # a call after the round: a round of its own
    assert many.calls == [[1, 2, 3, 4], [5]]


async def test_an_error_of_one_element_reaches_its_caller_only() -> None:
    coalescing = Coalescing(Recorder(), window=0.001)
    answers = await asyncio.gather(coalescing(1), coalescing(-2), coalescing(3), return_exceptions=True)
    assert answers[0] == 10 and answers[2] == 30
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "bad -2"


async def test_a_failed_round_fails_every_caller_of_that_round_only() -> None:
    many = Recorder()
    coalescing = Coalescing(many, window=0.001)
    answers = await asyncio.gather(coalescing(1), coalescing(13), return_exceptions=True)
    assert all(isinstance(answer, ConnectionError) for answer in answers)
    assert await coalescing(2) == 20


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    many = Recorder()
    coalescing = Coalescing(many, window=0.01)
    cancelled = asyncio.ensure_future(coalescing(1))
    kept = asyncio.ensure_future(coalescing(2))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await kept == 20
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert many.calls == [[1, 2]]  # its argument went out all the same (the write may be under way)


async def test_settled_sends_what_waits_at_once_and_waits_for_the_answers() -> None:
    many = Recorder()
    coalescing = Coalescing(many, window=60.0)
    waiting = asyncio.ensure_future(coalescing(7))
    await asyncio.sleep(0)
    await asyncio.wait_for(coalescing.settled(), timeout=5)
    assert waiting.done() and waiting.result() == 70
    assert many.calls == [[7]]
