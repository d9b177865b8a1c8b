"""Which answers the SDK retries, how long it waits, and how it names errors."""

from __future__ import annotations

import io

import httpx
import pytest
from predictors_client import (
    ConnectionFailed,
    FaceNotFound,
    InternalError,
    InvalidImage,
    ModelNotReady,
    PredictorError,
    RetryPolicy,
    ServiceBusy,
    Timeout,
    UnexpectedResponse,
)
from predictors_client.client import error_from_response
from predictors_client.errors import error_for
from predictors_client.images import encode_images, image_bytes

POLICY = RetryPolicy(retries=3, backoff_base=0.1, backoff_max=5.0)


@pytest.mark.parametrize(
    "error",
    [InvalidImage("x", status=400), FaceNotFound("x", status=422), InternalError("x", status=500),
     Timeout("x", status=504), Timeout("client side"), PredictorError("x", code="SOMETHING_NEW", status=503),
     UnexpectedResponse("proxy page", status=503)],
    ids=["400", "422", "500", "504", "client-deadline", "unknown-503", "non-json-503"],
)
def test_never_retried(error: PredictorError) -> None:
    assert POLICY.delay(0, error, remaining=60.0) is None


@pytest.mark.parametrize("error", [ServiceBusy("x", status=503), ModelNotReady("x", status=503),
                                   ConnectionFailed("refused")])
def test_retried_with_jittered_exponential_back_off(error: PredictorError) -> None:
    for attempt in range(3):
        delays = [POLICY.delay(attempt, error, remaining=60.0) for _ in range(200)]
        assert all(d is not None and 0.0 <= d <= 0.1 * 2**attempt for d in delays)
        assert len(set(delays)) > 100  # jittered
    assert POLICY.delay(3, error, remaining=60.0) is None  # retries spent


def test_retry_after_is_a_floor_and_the_deadline_a_ceiling() -> None:
    busy = ServiceBusy("x", status=503, retry_after=2.0)
    assert all(2.0 <= POLICY.delay(0, busy, remaining=60.0) <= 2.2 for _ in range(100))
    assert POLICY.delay(0, busy, remaining=1.5) is None  # no wait the deadline cannot afford


def response(status: int, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers)


def test_error_bodies_become_their_classes() -> None:
    error = error_from_response(response(503, b'{"error": "busy", "code": "SERVICE_BUSY", "request_id": "r1"}',
                                         {"Retry-After": "3"}), "sent-id")
    assert type(error) is ServiceBusy
    assert (error.code, error.status, error.request_id, error.message, error.retry_after) == (
        "SERVICE_BUSY", 503, "r1", "busy", 3.0)
    future = error_from_response(response(429, b'{"error": "slow down", "code": "RATE_LIMITED"}'), "sent-id")
    assert type(future) is PredictorError and future.code == "RATE_LIMITED" and future.request_id == "sent-id"
    page = error_from_response(response(502, b"<html>Bad Gateway</html>"), "sent-id")
    assert type(page) is UnexpectedResponse and page.status == 502 and "Bad Gateway" in page.message
    assert type(error_for("FACE_NOT_FOUND", "m", 422, "r")) is FaceNotFound


def test_http_date_retry_after() -> None:
    error = error_from_response(response(503, b'{"error": "e", "code": "SERVICE_BUSY"}',
                                         {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), "id")
    assert error.retry_after == 0.0  # a date in the past: retry at once


def test_image_inputs(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (4, 3), (1, 2, 3)).save(path)
    data = path.read_bytes()
    assert image_bytes(path) == image_bytes(str(path)) == image_bytes(io.BytesIO(data)) == data
    assert image_bytes(bytearray(data)) == image_bytes(memoryview(data)) == data
    assert Image.open(io.BytesIO(image_bytes(Image.open(path)))).getpixel((0, 0)) == (1, 2, 3)
    assert encode_images([data, data]) == ([data, data], True)
    assert encode_images(data) == ([data], False)
    with pytest.raises(TypeError, match="binary mode"):
        image_bytes(io.StringIO("text"))
    with pytest.raises(TypeError, match="cannot send int"):
        image_bytes(42)
