from pathlib import Path

import pytest
from pydantic import ValidationError

from predictors.cli import build_parser, settings_from_args
from predictors.settings import Settings


def test_defaults() -> None:
    settings = Settings()
    assert (settings.http_port, settings.grpc_port, settings.device) == (8080, 8081, "auto")
    assert settings.max_body_bytes == 20 * 1024 * 1024
    assert settings.max_image_pixels == 40_000_000 and settings.max_items_per_request == 64


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTORS_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("PREDICTORS_DEVICE", "cpu")
    monkeypatch.setenv("PREDICTORS_MODEL_DIRS", "a=/x,b=/y")
    monkeypatch.setenv("PREDICTORS_MODELS", "a, b")
    args = build_parser().parse_args(["serve", "--max-batch-size", "2", "--model-dir", "c=/z"])
    settings = settings_from_args(args)
    assert settings.max_batch_size == 2  # the flag wins
    assert settings.device == "cpu"  # the env var applies
    assert settings.model_dirs == {"c": Path("/z")}
    assert settings.models == ("a", "b")


@pytest.mark.parametrize(
    ("field", "value"),
    [("device", "tpu"), ("device", "cuda:x"), ("max_batch_size", 0), ("http_port", 70000),
     ("model_dirs", ["no-equals-sign"])],
)
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def test_unknown_env_settings_are_ignored_but_unknown_fields_are_not() -> None:
    with pytest.raises(ValidationError):
        Settings(max_batchsize=3)


def test_jobs_settings_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().jobs_redis_url is None  # jobs are off by default
    monkeypatch.setenv("PREDICTORS_JOBS_REDIS_URL", "rediss://:secret@redis.example:6380/2")
    monkeypatch.setenv("PREDICTORS_JOBS_MAX_ATTEMPTS", "5")
    args = build_parser().parse_args(["serve", "--jobs-result-ttl-seconds", "60", "--jobs-max-backlog", "7",
                                      "--jobs-visibility-timeout-seconds", "2.5", "--jobs-consumer-name", "pod-1"])
    settings = settings_from_args(args)
    assert settings.jobs_redis_url == "rediss://:secret@redis.example:6380/2"
    assert (settings.jobs_result_ttl_seconds, settings.jobs_max_backlog, settings.jobs_max_attempts) == (60, 7, 5)
    assert (settings.jobs_visibility_timeout_seconds, settings.jobs_consumer_name) == (2.5, "pod-1")


@pytest.mark.parametrize("url", ["", "  "])
def test_an_empty_redis_url_means_jobs_off(url: str) -> None:
    assert Settings(jobs_redis_url=url).jobs_redis_url is None


@pytest.mark.parametrize(("field", "value"), [("jobs_redis_url", "http://redis:6379"),
                                              ("jobs_redis_url", "localhost:6379"), ("jobs_max_attempts", 0),
                                              ("jobs_visibility_timeout_seconds", 0), ("jobs_max_backlog", 0)])
def test_invalid_jobs_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})
