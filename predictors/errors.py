"""The one error hierarchy of the server.

Every failure a caller can see is a `PredictorError` carrying its HTTP status, a stable `code` and a
human message. The edge (``predictors.server.errors``) maps them once to
``{"error": message, "code": CODE, "request_id": id}`` and to gRPC status codes; nothing else formats
errors.
"""

from __future__ import annotations

from http import HTTPStatus

import grpc

#: What the edge records (status label and ``code``) for a request whose client hung up before its answer:
#: nginx's 499 "client closed request". No response is sent (nobody is there to read it).
CLIENT_CLOSED = "CLIENT_CLOSED"
CLIENT_CLOSED_STATUS = 499


class PredictorError(Exception):
    """Base class: subclasses set `status`, `code` and `grpc_status`."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    code: str = "INTERNAL_ERROR"
    grpc_status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    #: extra response headers, e.g. Retry-After
    headers: dict[str, str] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PredictorError):
    status = HTTPStatus.BAD_REQUEST
    code = "INVALID_INPUT"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidImage(PredictorError):
    status = HTTPStatus.BAD_REQUEST
    code = "INVALID_IMAGE"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLarge(PredictorError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "PAYLOAD_TOO_LARGE"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnsupportedMediaType(PredictorError):
    """A request body whose Content-Type the route does not take (e.g. ``image/gif`` or ``text/plain``)."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "UNSUPPORTED_MEDIA_TYPE"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT  # REST only: gRPC messages have no Content-Type


class NotAcceptable(PredictorError):
    """The caller's ``Accept`` asks for a representation this answer does not have (an image from a model
    that returns none, or one image for several)."""

    status = HTTPStatus.NOT_ACCEPTABLE
    code = "NOT_ACCEPTABLE"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT  # REST only: gRPC has no Accept


class ImageTooLarge(PredictorError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "IMAGE_TOO_LARGE"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class FaceNotFound(PredictorError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "FACE_NOT_FOUND"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION


class ModelNotFound(PredictorError):
    status = HTTPStatus.NOT_FOUND
    code = "MODEL_NOT_FOUND"
    grpc_status = grpc.StatusCode.NOT_FOUND


class ModelNotReady(PredictorError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "MODEL_NOT_READY"
    grpc_status = grpc.StatusCode.UNAVAILABLE


class ServiceBusy(PredictorError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "SERVICE_BUSY"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_seconds)}


class RequestTimeout(PredictorError):
    status = HTTPStatus.GATEWAY_TIMEOUT
    code = "TIMEOUT"
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED


class RouteNotFound(PredictorError):
    """No such route (a wrong path, not an unknown model)."""

    status = HTTPStatus.NOT_FOUND
    code = "NOT_FOUND"
    grpc_status = grpc.StatusCode.UNIMPLEMENTED


class MethodNotAllowed(PredictorError):
    status = HTTPStatus.METHOD_NOT_ALLOWED
    code = "METHOD_NOT_ALLOWED"
    grpc_status = grpc.StatusCode.UNIMPLEMENTED


class InternalError(PredictorError):
    """An unexpected failure; the message is generic, the cause is only logged."""
