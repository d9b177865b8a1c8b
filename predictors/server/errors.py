"""Errors at the edge: every failure, mapped once (`dataplane.errors.report_error`), becomes
``{"error", "code", "request_id"}`` (REST) or a gRPC status with the same code (`grpc_error`)."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import errors as kserve_errors
from starlette.exceptions import HTTPException

from predictors import errors
from predictors.dataplane.errors import report_error
from predictors.telemetry.context import current_request_id


def error_body(error: errors.PredictorError) -> dict[str, Any]:
    return {"error": error.message, "code": error.code, "request_id": current_request_id.get()}


def error_response(error: BaseException) -> JSONResponse:
    """The REST answer to `error`: its HTTP status and ``{"error", "code", "request_id"}``."""
    mapped = report_error(error)
    return JSONResponse(error_body(mapped), status_code=int(mapped.status), headers=mapped.headers)


def grpc_error(error: BaseException) -> tuple[errors.PredictorError, grpc.StatusCode, str]:
    """The gRPC answer to `error`: the mapped error, its status code and the details string
    ``[CODE] message (request_id=...)`` (the code also travels as ``error-code`` trailing metadata)."""
    mapped = report_error(error)
    details = f"[{mapped.code}] {mapped.message} (request_id={current_request_id.get()})"
    return mapped, mapped.grpc_status, details


async def _handle(_: Request, error: Exception) -> JSONResponse:
    return error_response(error)


def error_for_status(status: int, message: str) -> errors.PredictorError:
    """The documented error for an HTTP error the framework produced itself (no such route, wrong method)."""
    if status == 404:
        return errors.RouteNotFound(f"{message}: no such route (see docs/protocol.md for the API)")
    if status == 405:
        return errors.MethodNotAllowed(message)
    if status == 413:
        return errors.PayloadTooLarge(message)
    if 400 <= status < 500:
        return errors.InvalidInput(message)
    return errors.InternalError("internal error; the server log has the details under this request_id")


def code_for_status(status: int) -> str:
    """The documented code of an error response that no handler above labelled."""
    return error_for_status(status, "").code


async def _handle_http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    mapped = error_for_status(error.status_code, str(error.detail))
    response = error_response(mapped)
    response.headers.update(getattr(error, "headers", None) or {})
    return response


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
