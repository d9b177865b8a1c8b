"""A real redis-server for the job store's tests (one per session; every test starts on an empty database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from devtools.redis_server import RedisServer, run_redis
from predictors.jobs.store import JobStore, connect


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture()
async def store(redis_server: RedisServer) -> AsyncIterator[JobStore]:
    job_store = JobStore(connect(redis_server.url))
    await job_store.redis.flushdb()
    yield job_store
    await job_store.aclose()
