"""The gRPC transport's edge: the request scope (`server/edge.py`) for every call, the message-size limit
on ModelInfer, clients that cancel, and errors as gRPC statuses with the same codes as REST
(`server/errors.py`)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_interceptor.exceptions import GrpcException
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor

from predictors import errors
from predictors.server.edge import TRACE_CARRIER_KEYS, client_closed, request_scope, response_metadata
from predictors.server.errors import grpc_error
from predictors.telemetry.context import REQUEST_ID_HEADER, current_request_id
from predictors.telemetry.edge import EdgeTelemetry
from predictors.telemetry.requests import RequestRecord, classify_grpc, current_request

_SPAN_ATTRIBUTES = {"rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService",
                    "rpc.method": "ModelInfer"}


class GrpcEdgeInterceptor(ExceptionToStatusInterceptor):
    """Runs every gRPC call in its request scope and maps its errors to status codes.

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
        with request_scope(self.telemetry, request_id=metadata.get(REQUEST_ID_HEADER), protocol="grpc",
                           kind=classify_grpc(method_name),
                           model=str(getattr(request_or_iterator, "model_name", "")),
                           version=str(getattr(request_or_iterator, "model_version", "")), method="",
                           path=method_name,
                           carrier={k: v for k, v in metadata.items() if k in TRACE_CARRIER_KEYS},
                           span_name=method_name.lstrip("/"), span_attributes=_SPAN_ATTRIBUTES) as record:
            return await self._call(method, request_or_iterator, context, method_name, record)

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
            # The client cancelled or hung up: not a server error (as over REST).
            client_closed(record, "CANCELLED", "the client cancelled the call")
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
        context.set_trailing_metadata(tuple(response_metadata(record)))
        return response

    async def handle_exception(self, ex: Exception, request_or_iterator: Any,
                               context: grpc.aio.ServicerContext, method_name: str) -> None:
        record = current_request.get()
        if isinstance(ex, GrpcException):
            if record is not None:
                record.status = ex.status_code.name
            await super().handle_exception(ex, request_or_iterator, context, method_name)
            return
        mapped, status, details = grpc_error(ex)
        error_code = ("error-code", mapped.code)
        if record is not None:
            record.status = status.name
            context.set_trailing_metadata(tuple(response_metadata(record, error_code)))
        else:
            context.set_trailing_metadata(((REQUEST_ID_HEADER, current_request_id.get()), error_code))
        await context.abort(status, details)
