"""What the jobs' pieces name: the consumer, the Redis URL in logs, the job routes in the access log."""

from __future__ import annotations

import os
import socket

import pytest

from predictors.jobs.lifecycle import redacted
from predictors.jobs.worker import consumer_name
from predictors.telemetry.requests import classify_rest


def test_the_consumer_is_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "predictors-7d9f-abcde")
    assert consumer_name(None) == "predictors-7d9f-abcde"
    assert consumer_name("configured") == "configured"
    monkeypatch.delenv("POD_NAME")
    assert consumer_name(None) == f"{socket.gethostname()}-{os.getpid()}"


@pytest.mark.parametrize(("url", "logged"), [
    ("rediss://:s3cret@redis.example:6380/2", "rediss://:***@redis.example:6380/2"),
    ("redis://user:s3cret@redis/0", "redis://user:***@redis/0"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_a_redis_password_never_reaches_the_log(url: str, logged: str) -> None:
    assert redacted(url) == logged


@pytest.mark.parametrize(("path", "classified"), [
    ("/v1/models/face-enhancement:submit", ("other", "v1", "face-enhancement", "")),
    ("/v2/models/general-recognition/jobs", ("other", "v2", "general-recognition", "")),
    ("/v2/jobs/0123456789abcdef0123456789abcdef", ("other", "v2", "", "")),
    ("/v1/models/face-enhancement:predict", ("infer", "v1", "face-enhancement", "")),
])
def test_job_routes_are_logged_with_their_model_not_counted_as_inference(path: str, classified: tuple) -> None:
    assert classify_rest(path) == classified
