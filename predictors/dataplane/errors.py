"""Any exception, as the error the caller sees: every transport (REST, gRPC, jobs) reports a failure here
once, and each writes the mapped error in its own wire form (`server/errors.py`, the jobs' records).

KServe's own exceptions (raised by its data plane) are translated into our codes so that callers see one
consistent contract whichever layer noticed the problem.
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from kserve import errors as kserve_errors

from predictors import errors
from predictors.device import DeviceLost
from predictors.telemetry import tracing
from predictors.telemetry.context import current_request_id
from predictors.telemetry.requests import current_request

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


def report_error(error: BaseException) -> errors.PredictorError:
    """The error the caller sees for `error`, noted on the current request (span, code) and logged: a
    traceback only for unexpected errors, a warning for the server's own refusals (5xx), else info."""
    mapped = as_predictor_error(error)
    unexpected = isinstance(mapped, errors.InternalError) and mapped is not error
    tracing.note_exception(current_request.get(), mapped.code, error if unexpected else None)
    if unexpected:
        logger.error("request %s failed", current_request_id.get(), exc_info=error)
    elif mapped.status >= 500:
        logger.warning("request %s: %s %s", current_request_id.get(), mapped.code, mapped.message)
    else:
        logger.info("request %s: %s %s", current_request_id.get(), mapped.code, mapped.message)
    return mapped
