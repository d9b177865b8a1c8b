"""Which event loop serves the process (`Settings.event_loop`).

uvloop runs the loop's own bookkeeping (callbacks, timers, socket reads and writes) in C, which takes a
measurable share of the main thread's time per request and per job off it (docs/performance.md, "What the
server's defaults rest on"). The request handling itself (Starlette, FastAPI, redis-py) is Python either way.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from predictors.settings import EventLoop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopUnavailable(RuntimeError):
    """`event_loop` asks for uvloop and it is not installed."""


def loop_factory(choice: EventLoop) -> tuple[str, LoopFactory | None]:
    """(the loop's name, the factory `asyncio.Runner` takes; None: the standard library's loop)."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as error:
        if choice == "uvloop":
            raise EventLoopUnavailable(
                f"event_loop is uvloop but uvloop cannot be imported ({error}); install it "
                "(pip install uvloop; there is none for Windows) or choose auto or asyncio") from None
        return "asyncio", None
    factory: LoopFactory = uvloop.new_event_loop
    return f"uvloop {uvloop.__version__}", factory
