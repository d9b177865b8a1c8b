"""The threads of asynchronous jobs' CPU work: there only with jobs on, at the forward pass's lower priority."""

from __future__ import annotations

import os
import threading

import pytest

from predictors.server.app import job_workers_pool
from predictors.settings import Settings


def priority() -> tuple[str, int, int]:
    thread = threading.get_native_id()
    return threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, thread), os.sched_getscheduler(thread)


@pytest.mark.parametrize("idle", [False, True], ids=["forward-niced", "forward-idle"])
def test_jobs_cpu_work_runs_on_threads_of_their_own_niced(idle: bool) -> None:
    _, base, policy = priority()
    assert policy == os.SCHED_OTHER
    pool = job_workers_pool(Settings(jobs_redis_url="redis://127.0.0.1:1/0", cpu_forward_nice=3,
                                     cpu_forward_idle=idle, worker_threads=2))
    assert pool is not None
    with pool:
        name, nice, policy = pool.submit(priority).result(timeout=10)
    assert name.startswith("jobs-prep") and nice == min(19, base + 3)
    assert policy == os.SCHED_OTHER  # niced only, whether the forward passes run under SCHED_IDLE or not
    assert priority()[1:] == (base, os.SCHED_OTHER)  # the caller's is untouched


def test_no_jobs_no_threads() -> None:
    assert job_workers_pool(Settings()) is None
