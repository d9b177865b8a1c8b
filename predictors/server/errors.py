"""The edge: every failure becomes ``{"error", "code", "request_id"}`` (REST) or a gRPC status, here only.

KServe's own exceptions (raised by its data plane) are translated into our codes so that callers see
one consistent contract whichever layer noticed the problem.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from grpc_interceptor.exceptions import GrpcException
from kserve import errors as kserve_errors
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from starlette.exceptions import HTTPException

from predictors import errors
from predictors.device import DeviceLost
from predictors.telemetry import tracing
from predictors.telemetry.context import REQUEST_ID_HEADER, accept_request_id, current_request_id
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.requests import RequestRecord, classify_grpc, current_request

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
    if isinstance(error, DeviceLost):
        # Not this request's fault, and another replica can answer it: a retryable 503 (the SDK retries it).
        return errors.ModelNotReady("the model's device failed; this server is restarting: retry the request")
    return errors.InternalError("internal error; the server log has the details under this request_id")


def _summarise_validation(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        location = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {problem.get('msg')}")
    return "; ".join(parts)


def error_body(error: errors.PredictorError) -> dict[str, Any]:
    return {"error": error.message, "code": error.code, "request_id": current_request_id.get()}


def error_response(error: BaseException) -> JSONResponse:
    mapped = as_predictor_error(error)
    unexpected = isinstance(mapped, errors.InternalError) and mapped is not error
    tracing.note_exception(current_request.get(), mapped.code, error if unexpected else None)
    if unexpected:
        logger.error("request %s failed", current_request_id.get(), exc_info=error)
    elif mapped.status >= 500:
        logger.warning("request %s: %s %s", current_request_id.get(), mapped.code, mapped.message)
    else:
        logger.info("request %s: %s %s", current_request_id.get(), mapped.code, mapped.message)
    return JSONResponse(error_body(mapped), status_code=int(mapped.status), headers=mapped.headers)


async def _handle(_: Request, error: Exception) -> JSONResponse:
    return error_response(error)


def error_for_status(status: int, message: str) -> errors.PredictorError:
    """The documented error for an HTTP error the framework produced itself (no such route, wrong method)."""
    if status == 404:
        return errors.RouteNotFound(f"{message}: no such route (see the README for the API)")
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


class GrpcErrorInterceptor(ExceptionToStatusInterceptor):
    """Sets the request id for gRPC calls and maps errors to status codes with the same codes as REST.

    ModelInfer calls also get a server span (joined to a ``traceparent`` in the metadata; ours comes
    back in the trailing metadata with ``x-trace-id``), request metrics and an access-log line.
    """

    def __init__(self, telemetry: EdgeTelemetry | None = None, max_message_bytes: int | None = None) -> None:
        super().__init__()
        self.telemetry = telemetry or EdgeTelemetry()
        #: the REST body limit, applied to ModelInfer messages (grpc's own bound is a safety net above it)
        self.max_message_bytes = max_message_bytes

    async def intercept(self, method: Any, request_or_iterator: Any, context: grpc.aio.ServicerContext,
                        method_name: str) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        request_id = accept_request_id(metadata.get(REQUEST_ID_HEADER))
        current_request_id.set(request_id)
        kind = classify_grpc(method_name)
        record = RequestRecord(request_id, "grpc", kind, str(getattr(request_or_iterator, "model_name", "")),
                               str(getattr(request_or_iterator, "model_version", "")), "", method_name)
        current_request.set(record)
        if kind == "probe":
            return await self._call(method, request_or_iterator, context, method_name, record)
        self.telemetry.begin(record)
        try:
            if kind != "infer":
                return await self._call(method, request_or_iterator, context, method_name, record)
            carrier = {k: v for k, v in metadata.items() if k in ("traceparent", "tracestate", "baggage")}
            attributes = {tracing.MODEL: record.model, tracing.PROTOCOL: "grpc",
                          tracing.REQUEST_ID: request_id,
                          "rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService",
                          "rpc.method": "ModelInfer"}
            if record.version:
                attributes[tracing.MODEL_VERSION] = record.version
            with tracing.server_span(record, self.telemetry.tracing, carrier, method_name.lstrip("/"),
                                     attributes):
                return await self._call(method, request_or_iterator, context, method_name, record)
        finally:
            self.telemetry.finish(record)

    async def _call(self, method: Any, request_or_iterator: Any, context: grpc.aio.ServicerContext,
                    method_name: str, record: RequestRecord) -> Any:
        try:
            if record.kind == "infer" and self.max_message_bytes is not None:
                size = request_or_iterator.ByteSize()
                if size > self.max_message_bytes:
                    await self.handle_exception(errors.PayloadTooLarge(
                        f"request message of {size} bytes exceeds the limit of {self.max_message_bytes} bytes"
                    ), request_or_iterator, context, method_name)
            response = await super().intercept(method, request_or_iterator, context, method_name)
        except asyncio.CancelledError:
            # The client cancelled or hung up: not a server error (nginx's 499 convention, as over REST).
            record.status, record.code = "CANCELLED", errors.CLIENT_CLOSED
            tracing.note_exception(record, errors.CLIENT_CLOSED, None)
            logger.info("gRPC request %s: the client cancelled it", record.request_id)
            raise
        except BaseException:
            if not record.status:
                code = context.code() if hasattr(context, "code") else None
                record.status = getattr(code, "name", None) or "UNKNOWN"
            if record.code == "OK":
                record.code = str(record.status)
            raise
        record.status = "OK"
        # Set after the call: KServe's servicer reads trailing metadata as request headers.
        context.set_trailing_metadata(_trailing_metadata(record.request_id, record))
        return response

    async def handle_exception(self, ex: Exception, request_or_iterator: Any,
                               context: grpc.aio.ServicerContext, method_name: str) -> None:
        if isinstance(ex, GrpcException):
            record = current_request.get()
            if record is not None:
                record.status = ex.status_code.name
            await super().handle_exception(ex, request_or_iterator, context, method_name)
            return
        mapped = as_predictor_error(ex)
        unexpected = isinstance(mapped, errors.InternalError) and mapped is not ex
        record = current_request.get()
        tracing.note_exception(record, mapped.code, ex if unexpected else None)
        if record is not None:
            record.status = mapped.grpc_status.name
        if unexpected:
            logger.error("gRPC request %s failed", current_request_id.get(), exc_info=ex)
        request_id = current_request_id.get()
        context.set_trailing_metadata(_trailing_metadata(request_id, record, ("error-code", mapped.code)))
        await context.abort(mapped.grpc_status, f"[{mapped.code}] {mapped.message} (request_id={request_id})")


def _trailing_metadata(request_id: str, record: RequestRecord | None,
                       *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Request id, trace context and `extra` for a gRPC response's trailing metadata."""
    trailing = [(REQUEST_ID_HEADER, request_id), *extra]
    if record is not None:
        traceparent = tracing.traceparent(record)
        if traceparent:
            trailing.append(("traceparent", traceparent))
        if record.trace_id:
            trailing.append(("x-trace-id", record.trace_id))
    return tuple(trailing)
