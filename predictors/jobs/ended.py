"""`JobEndings`: wakes this process's long polls (``GET /v2/jobs/{id}?wait=S``) when their job ends, in
whatever process it ended.

The scripts that make a job final (`scripts.py`: FINISH when it writes, START when the job has used its
runs, CANCEL when it cancels) publish the job's id on `store.JOB_ENDED_CHANNEL`, in the same atomic step as
the change. Each server process keeps one subscription to that channel, on a connection of its own, made
when the first long poll arrives and kept afterwards (one listener task); a registry maps each job id to
the events of the polls waiting for it, and a message sets the events of its id only.

A poll registers its event and waits for the subscription to be confirmed before it reads the job
(`JobService`), so an end published after that read is never missed. Pub/sub delivers at most once: a
message published while the subscription's connection is down is lost, so a held poll also reads its job
again every `REREAD_SECONDS`, and every held poll is woken to read again once the subscription is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from predictors.jobs.store import JOB_ENDED_CHANNEL

logger = logging.getLogger(__name__)

#: a held poll reads its job again this often, whatever it heard: a lost message (the subscription's
#: connection dropped) delays its answer by at most this, for one small HMGET per poll and period
REREAD_SECONDS = 2.0
#: longest wait of the listener's read; it then reads again (redis-py pings the idle connection meanwhile)
LISTEN_BLOCK_SECONDS = 1.0
#: pauses between attempts to subscribe while Redis is unreachable
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0


class JobEndings:
    """The registry job id -> waiting polls, and the one subscription that wakes them."""

    def __init__(self, connect: Callable[[], Redis]) -> None:
        self._connect = connect
        self._redis: Redis | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed = False
        #: the last attempt to subscribe failed (Redis unreachable): polls answer at once until one succeeds
        self._failed = False
        #: set (and replaced) whenever an attempt to subscribe succeeded or failed
        self._settled = asyncio.Event()
        #: SIGTERM: every held poll answers now and no new one waits
        self.released = False

    def waiting(self) -> int:
        """Polls held now (for tests and the shutdown log)."""
        return sum(len(events) for events in self._waiters.values())

    @contextlib.contextmanager
    def waiter(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when `job_id` ends (or at shutdown), registered for the block's duration."""
        self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        if self.released:
            event.set()
        try:
            yield event
        finally:
            events = self._waiters.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[job_id]

    async def subscribed(self, timeout: float) -> bool:
        """Make sure the subscription is confirmed (starting it on first use); False when it cannot be
        within `timeout` (Redis unreachable) or the server is shutting down: the poll then answers at once."""
        if self.released:
            return False
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="jobs-ended")
        if self._subscribed or self._failed:
            return self._subscribed
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self._subscribed

    def release(self) -> None:
        """SIGTERM: answer every held poll now, so that they do not hold up the graceful shutdown.
        Signal-safe: the events are set on the event loop."""
        self.released = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_all)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # ---- the listener ----------------------------------------------------------------------------

    async def _listen(self) -> None:
        pause, lost = BACKOFF_FIRST, False
        while True:
            if self._redis is None:
                self._redis = self._connect()
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(JOB_ENDED_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_BLOCK_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._wake(message["data"].decode())
                    elif message["type"] == "subscribe":
                        if lost:  # ends published while it was down were not heard: every poll reads again
                            logger.info("jobs: listening for ended jobs again")
                            self._wake_all()
                        pause, lost = BACKOFF_FIRST, False
                        self._settle(subscribed=True)
            except Exception as error:  # noqa: BLE001 - the listener outlives anything; polls fall back meanwhile
                if not lost:
                    unexpected = not isinstance(error, (RedisError, OSError))
                    logger.warning("jobs: cannot listen for ended jobs (%s: %s); long polls answer at once "
                                   "until it listens again", type(error).__name__, error,
                                   exc_info=error if unexpected else None)
                lost = True
                self._settle(subscribed=False)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(pause)
            pause = min(BACKOFF_MAX, pause * 2)

    def _settle(self, *, subscribed: bool) -> None:
        self._subscribed, self._failed = subscribed, not subscribed
        settled, self._settled = self._settled, asyncio.Event()
        settled.set()

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()
