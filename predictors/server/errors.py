"""The edge: every failure becomes ``{"error", "code", "request_id"}`` (REST) or a gRPC status, here only.

KServe's own exceptions (raised by its data plane) are translated into our codes so that callers see
one consistent contract whichever layer noticed the problem.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from grpc_interceptor.exceptions import GrpcException
from kserve import errors as kserve_errors
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from starlette.exceptions import HTTPException

from predictors import errors
from predictors.telemetry.context import REQUEST_ID_HEADER, accept_request_id, current_request_id

logger = logging.getLogger(__name__)


def as_predictor_error(error: BaseException) -> errors.PredictorError:
    """Translate any exception into the error the caller sees (unexpected ones become INTERNAL_ERROR)."""
    if isinstance(error, errors.PredictorError):
        return error
    if isinstance(error, kserve_errors.ModelNotFound):
        return errors.ModelNotFound(str(error))
    if isinstance(error, (kserve_errors.ModelNotReady, kserve_errors.ServerNotReady)):
        return errors.ModelNotReady(str(error))
    if isinstance(error, (kserve_errors.InvalidInput, kserve_errors.UnsupportedProtocol)):
        return errors.InvalidInput(str(error))
    if isinstance(error, RequestValidationError):
        return errors.InvalidInput("malformed request: " + _summarise_validation(error))
    return errors.InternalError("internal error; the server log has the details under this request_id")


def _summarise_validation(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        location = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {problem.get('msg')}")
    return "; ".join(parts)


def error_body(error: errors.PredictorError) -> dict[str, Any]:
    return {"error": error.message, "code": error.code, "request_id": current_request_id.get()}


def error_response(error: BaseException) -> ORJSONResponse:
    mapped = as_predictor_error(error)
    if isinstance(mapped, errors.InternalError) and mapped is not error:
        logger.error("request %s failed", current_request_id.get(), exc_info=error)
    elif mapped.status >= 500:
        logger.warning("request %s: %s %s", current_request_id.get(), mapped.code, mapped.message)
    else:
        logger.info("request %s: %s %s", current_request_id.get(), mapped.code, mapped.message)
    return ORJSONResponse(error_body(mapped), status_code=int(mapped.status), headers=mapped.headers)


async def _handle(_: Request, error: Exception) -> ORJSONResponse:
    return error_response(error)


async def _handle_http(_: Request, error: Exception) -> ORJSONResponse:
    assert isinstance(error, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
    body = {"error": str(error.detail), "code": code, "request_id": current_request_id.get()}
    return ORJSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))


def install_rest_handlers(app: FastAPI) -> None:
    """Replace KServe's handlers (which answer ``{"error": ...}`` only) with ours."""
    for exception_class in (
        errors.PredictorError,
        kserve_errors.InvalidInput,
        kserve_errors.InferenceError,
        kserve_errors.ModelNotFound,
        kserve_errors.ModelNotReady,
        kserve_errors.ServerNotReady,
        kserve_errors.ServerNotLive,
        kserve_errors.UnsupportedProtocol,
        NotImplementedError,
        RequestValidationError,
    ):
        app.exception_handlers[exception_class] = _handle
    app.exception_handlers[HTTPException] = _handle_http
    # Exception (500) is handled by RequestContextMiddleware so the response still carries X-Request-ID.
    app.exception_handlers.pop(Exception, None)


class GrpcErrorInterceptor(ExceptionToStatusInterceptor):
    """Sets the request id for gRPC calls and maps errors to status codes with the same codes as REST."""

    async def intercept(self, method: Any, request_or_iterator: Any, context: grpc.aio.ServicerContext,
                        method_name: str) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        request_id = accept_request_id(metadata.get(REQUEST_ID_HEADER))
        current_request_id.set(request_id)
        response = await super().intercept(method, request_or_iterator, context, method_name)
        # Set after the call: KServe's servicer reads trailing metadata as request headers.
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        return response

    async def handle_exception(self, ex: Exception, request_or_iterator: Any,
                               context: grpc.aio.ServicerContext, method_name: str) -> None:
        if isinstance(ex, GrpcException):
            await super().handle_exception(ex, request_or_iterator, context, method_name)
            return
        mapped = as_predictor_error(ex)
        if isinstance(mapped, errors.InternalError) and mapped is not ex:
            logger.error("gRPC request %s failed", current_request_id.get(), exc_info=ex)
        request_id = current_request_id.get()
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id), ("error-code", mapped.code)))
        await context.abort(mapped.grpc_status, f"[{mapped.code}] {mapped.message} (request_id={request_id})")
