"""Exceptions named after the server's error codes (README "Errors").

Every exception carries the server's `code`, the HTTP `status` (None when no answer came), the
`request_id` (the one the client sent on every attempt, or the server's) and the server's `message`.
A code this client does not know yet becomes a plain `PredictorError` with that code, never a crash.
"""

from __future__ import annotations


class PredictorError(Exception):
    """Base class of every error this client raises."""

    code: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.request_id = request_id
        #: seconds the server asked the caller to wait (503 with Retry-After)
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"[{self.code}{status}] {self.message} (request_id={self.request_id})"


class InvalidInput(PredictorError):
    code = "INVALID_INPUT"


class InvalidImage(PredictorError):
    code = "INVALID_IMAGE"


class PayloadTooLarge(PredictorError):
    code = "PAYLOAD_TOO_LARGE"


class ImageTooLarge(PredictorError):
    code = "IMAGE_TOO_LARGE"


class ModelNotFound(PredictorError):
    code = "MODEL_NOT_FOUND"


class FaceNotFound(PredictorError):
    code = "FACE_NOT_FOUND"


class ModelNotReady(PredictorError):
    code = "MODEL_NOT_READY"


class ServiceBusy(PredictorError):
    code = "SERVICE_BUSY"


class Timeout(PredictorError, TimeoutError):
    """The server's 504 `TIMEOUT`, or the call's own deadline passed on the client side (status None)."""

    code = "TIMEOUT"


class InternalError(PredictorError):
    code = "INTERNAL_ERROR"


class JobNotFound(PredictorError):
    """No such job: never submitted, or expired (the server keeps jobs for its result TTL)."""

    code = "JOB_NOT_FOUND"


class JobsDisabled(PredictorError):
    """The server runs without asynchronous jobs (no Redis configured)."""

    code = "JOBS_DISABLED"


class JobsUnavailable(PredictorError):
    """The server's job queue (Redis) cannot be reached for now; synchronous calls still work."""

    code = "JOBS_UNAVAILABLE"


class ConnectionFailed(PredictorError, ConnectionError):
    """No answer: the server could not be reached or dropped the connection (after the retries)."""

    code = "CONNECTION_FAILED"


class UnexpectedResponse(PredictorError):
    """An answer that is not the server's contract: a non-JSON error body, a proxy's page, a bad payload."""

    code = "UNEXPECTED_RESPONSE"


#: server code -> exception class; codes missing here map to `PredictorError` itself
ERRORS_BY_CODE: dict[str, type[PredictorError]] = {
    cls.code: cls
    for cls in (InvalidInput, InvalidImage, PayloadTooLarge, ImageTooLarge, ModelNotFound, FaceNotFound,
                ModelNotReady, ServiceBusy, Timeout, InternalError, JobNotFound, JobsDisabled, JobsUnavailable)
}

#: the HTTP status the server answers each code with (README "Errors"): a failed job's error has no HTTP
#: answer of its own, so its exception carries the status the synchronous call would have had
STATUS_BY_CODE: dict[str, int] = {
    "INVALID_INPUT": 400, "INVALID_IMAGE": 400, "PAYLOAD_TOO_LARGE": 413, "IMAGE_TOO_LARGE": 413,
    "MODEL_NOT_FOUND": 404, "FACE_NOT_FOUND": 422, "MODEL_NOT_READY": 503, "SERVICE_BUSY": 503, "TIMEOUT": 504,
    "INTERNAL_ERROR": 500,
}

#: codes worth another attempt: the server will be able to answer later
RETRYABLE_CODES = frozenset({ModelNotReady.code, ServiceBusy.code, JobsUnavailable.code})


def error_for(
    code: str, message: str, status: int | None, request_id: str | None, retry_after: float | None = None
) -> PredictorError:
    cls = ERRORS_BY_CODE.get(code, PredictorError)
    return cls(message, code=code, status=status, request_id=request_id, retry_after=retry_after)
