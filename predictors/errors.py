"""The one error hierarchy of the server.

Every failure a caller can see is a `PredictorError` carrying its HTTP status, a stable `code` and a
human message. The edge (``predictors.server.errors``) maps them once to
``{"error": message, "code": CODE, "request_id": id}`` and to gRPC status codes; nothing else formats
errors.
"""

from __future__ import annotations

from http import HTTPStatus

from grpc import StatusCode

#: What the edge records (status label and ``code``) for a request whose client hung up before its answer:
#: nginx's 499 "client closed request". No response is sent (nobody is there to read it).
CLIENT_CLOSED = "CLIENT_CLOSED"
CLIENT_CLOSED_STATUS = 499


class PredictorError(Exception):
    """Base class. A subclass declares its stable `code`, HTTP status and gRPC status as class keywords, one
    line per error: ``class Gone(PredictorError, code="GONE", http=410, grpc=StatusCode.NOT_FOUND)``."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    code: str = "INTERNAL_ERROR"
    grpc_status: StatusCode = StatusCode.INTERNAL
    #: extra response headers, e.g. Retry-After
    headers: dict[str, str] = {}

    def __init_subclass__(cls, *, code: str | None = None, http: int | None = None, grpc: StatusCode | None = None,
                          **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = code or cls.code
        cls.status = HTTPStatus(http) if http else cls.status
        cls.grpc_status = grpc or cls.grpc_status

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PredictorError, code="INVALID_INPUT", http=400, grpc=StatusCode.INVALID_ARGUMENT):
    """A field, parameter or tensor is missing, ill-typed, out of range or not expected."""


class InvalidImage(PredictorError, code="INVALID_IMAGE", http=400, grpc=StatusCode.INVALID_ARGUMENT):
    """Image bytes that do not decode (unknown format, truncated, corrupt)."""


class PayloadTooLarge(PredictorError, code="PAYLOAD_TOO_LARGE", http=413, grpc=StatusCode.RESOURCE_EXHAUSTED):
    """A request body (or gRPC message) larger than `max_body_bytes`."""


# REST only, both: gRPC messages carry no Content-Type and gRPC has no Accept.
class UnsupportedMediaType(PredictorError, code="UNSUPPORTED_MEDIA_TYPE", http=415,
                           grpc=StatusCode.INVALID_ARGUMENT):
    """A request body whose Content-Type the route does not take (e.g. ``image/gif``, or ``text/plain`` that is
    not JSON)."""


class NotAcceptable(PredictorError, code="NOT_ACCEPTABLE", http=406, grpc=StatusCode.INVALID_ARGUMENT):
    """The caller's ``Accept`` asks for a representation this answer does not have (an image from a model that
    returns none, or one image for several)."""


class ImageTooLarge(PredictorError, code="IMAGE_TOO_LARGE", http=413, grpc=StatusCode.INVALID_ARGUMENT):
    """An image above the pixel count or the longest side a model accepts (checked before decoding)."""


class FaceNotFound(PredictorError, code="FACE_NOT_FOUND", http=422, grpc=StatusCode.FAILED_PRECONDITION):
    """Face enhancement with ``require_face`` on an image in which the detector finds no face."""


class ModelNotFound(PredictorError, code="MODEL_NOT_FOUND", http=404, grpc=StatusCode.NOT_FOUND):
    """No served model of that name (or version)."""


class ModelNotReady(PredictorError, code="MODEL_NOT_READY", http=503, grpc=StatusCode.UNAVAILABLE):
    """The model is still loading, or its device was lost and the process is about to restart."""


class RetryLater(PredictorError, http=503, grpc=StatusCode.UNAVAILABLE):
    """A 503 that tells the caller when to come back (``Retry-After`` seconds)."""

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_seconds)}


class ServiceBusy(RetryLater, code="SERVICE_BUSY", grpc=StatusCode.RESOURCE_EXHAUSTED):
    """The queue is full (or its estimated wait too long), or a model's job backlog is: try again after
    ``Retry-After`` seconds."""


class RequestTimeout(PredictorError, code="TIMEOUT", http=504, grpc=StatusCode.DEADLINE_EXCEEDED):
    """The request's deadline (``timeout_ms`` or its header) passed before its answer was ready."""


# Images by URL (docs/protocol.md, "Images by URL").
class ImageURLRefused(PredictorError, code="IMAGE_URL_REFUSED", http=400, grpc=StatusCode.INVALID_ARGUMENT):
    """An image URL the server will not fetch: images by URL are off, or the URL (or a redirect) is not https, has
    user info, is not on the allowlist, resolves to a non-public address, or redirects too often."""


class ImageURLTooLarge(PredictorError, code="IMAGE_URL_TOO_LARGE", http=413, grpc=StatusCode.INVALID_ARGUMENT):
    """The image at a URL is larger than ``image_url_max_bytes``."""


class ImageURLFailed(PredictorError, code="IMAGE_URL_FAILED", http=502, grpc=StatusCode.UNAVAILABLE):
    """An allowed image URL could not be fetched: its host does not resolve, the connection or TLS fails, it
    answers another status than 200, or it takes longer than ``image_url_timeout_seconds``."""


class RouteNotFound(PredictorError, code="NOT_FOUND", http=404, grpc=StatusCode.UNIMPLEMENTED):
    """No such route (a wrong path, not an unknown model)."""


class MethodNotAllowed(PredictorError, code="METHOD_NOT_ALLOWED", http=405, grpc=StatusCode.UNIMPLEMENTED):
    """A known route called with a method it does not serve."""


# Asynchronous jobs (REST only: gRPC has no job routes).
class JobNotFound(PredictorError, code="JOB_NOT_FOUND", http=404, grpc=StatusCode.NOT_FOUND):
    """No such asynchronous job: never submitted, or expired after ``jobs_result_ttl_seconds``."""


class JobsDisabled(PredictorError, code="JOBS_DISABLED", http=404, grpc=StatusCode.UNIMPLEMENTED):
    """The job routes exist, but this server runs without ``jobs_redis_url``."""


class JobsUnavailable(RetryLater, code="JOBS_UNAVAILABLE"):
    """The jobs' Redis cannot be reached: retry later (synchronous inference is unaffected)."""


class InternalError(PredictorError):
    """An unexpected failure; the message is generic, the cause is only logged."""
