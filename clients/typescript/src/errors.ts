/**
 * Errors named after the server's error codes (README "Errors"). Every error carries the server's `code`,
 * the HTTP `status` (null when no answer came), the `requestId` (the one sent on every attempt, or the
 * server's) and the server's `message`. A code this SDK does not know yet is a plain `PredictorError`
 * with that code, never a crash.
 */

export interface ErrorDetails {
  code?: string;
  status?: number | null;
  requestId?: string | null;
  /** seconds the server asked the caller to wait (a 503 with Retry-After) */
  retryAfter?: number | null;
  cause?: unknown;
}

/** Base class of every error this SDK throws. */
export class PredictorError extends Error {
  static readonly code: string = "ERROR";
  readonly code: string;
  readonly status: number | null;
  readonly requestId: string | null;
  readonly retryAfter: number | null;

  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code ?? (new.target as typeof PredictorError).code;
    this.status = details.status ?? null;
    this.requestId = details.requestId ?? null;
    this.retryAfter = details.retryAfter ?? null;
  }

  override toString(): string {
    const status = this.status === null ? "" : ` ${this.status}`;
    return `${this.name}: [${this.code}${status}] ${this.message} (requestId=${this.requestId})`;
  }
}

export class InvalidInputError extends PredictorError { static override readonly code = "INVALID_INPUT"; }
export class InvalidImageError extends PredictorError { static override readonly code = "INVALID_IMAGE"; }
export class PayloadTooLargeError extends PredictorError { static override readonly code = "PAYLOAD_TOO_LARGE"; }
export class ImageTooLargeError extends PredictorError { static override readonly code = "IMAGE_TOO_LARGE"; }
export class ModelNotFoundError extends PredictorError { static override readonly code = "MODEL_NOT_FOUND"; }
export class FaceNotFoundError extends PredictorError { static override readonly code = "FACE_NOT_FOUND"; }
export class ModelNotReadyError extends PredictorError { static override readonly code = "MODEL_NOT_READY"; }
export class ServiceBusyError extends PredictorError { static override readonly code = "SERVICE_BUSY"; }
/** The server's 504 `TIMEOUT`, or the call's own deadline passed on the client side (status null). */
export class TimeoutError extends PredictorError { static override readonly code = "TIMEOUT"; }
export class InternalError extends PredictorError { static override readonly code = "INTERNAL_ERROR"; }
/** No such job: never submitted, or expired (the server keeps jobs for its result TTL). */
export class JobNotFoundError extends PredictorError { static override readonly code = "JOB_NOT_FOUND"; }
/** The server runs without asynchronous jobs (no Redis configured). */
export class JobsDisabledError extends PredictorError { static override readonly code = "JOBS_DISABLED"; }
/** The server's job queue (Redis) cannot be reached for now; synchronous calls still work. */
export class JobsUnavailableError extends PredictorError { static override readonly code = "JOBS_UNAVAILABLE"; }
/** `result` of a job that was cancelled: it has no result. */
export class JobCancelledError extends PredictorError { static override readonly code = "JOB_CANCELLED"; }
/** No answer: the server could not be reached or dropped the connection (after the retries). */
export class ConnectionFailedError extends PredictorError { static override readonly code = "CONNECTION_FAILED"; }
/** An answer outside the server's contract: a non-JSON error body, a proxy's page, a bad payload. */
export class UnexpectedResponseError extends PredictorError { static override readonly code = "UNEXPECTED_RESPONSE"; }

/** Every error class by the code it stands for (server codes and the SDK's own). */
export const ERRORS_BY_CODE: Readonly<Record<string, typeof PredictorError>> = Object.freeze(Object.fromEntries(
  [InvalidInputError, InvalidImageError, PayloadTooLargeError, ImageTooLargeError, ModelNotFoundError,
    FaceNotFoundError, ModelNotReadyError, ServiceBusyError, TimeoutError, InternalError, JobNotFoundError,
    JobsDisabledError, JobsUnavailableError, JobCancelledError, ConnectionFailedError, UnexpectedResponseError,
  ].map((cls) => [cls.code, cls]),
));

/**
 * The HTTP status the server answers each code with: a failed job's error has no HTTP answer of its own,
 * so its error carries the status the synchronous call would have had.
 */
export const STATUS_BY_CODE: Readonly<Record<string, number>> = Object.freeze({
  INVALID_INPUT: 400, INVALID_IMAGE: 400, PAYLOAD_TOO_LARGE: 413, IMAGE_TOO_LARGE: 413, MODEL_NOT_FOUND: 404,
  FACE_NOT_FOUND: 422, MODEL_NOT_READY: 503, SERVICE_BUSY: 503, TIMEOUT: 504, INTERNAL_ERROR: 500,
});

/** Codes worth another attempt: the server will be able to answer later. */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set(["MODEL_NOT_READY", "SERVICE_BUSY", "JOBS_UNAVAILABLE"]);

/** The error for a code from the server (the base class for a code this SDK does not know). */
export function errorFor(code: string, message: string, details: Omit<ErrorDetails, "code">): PredictorError {
  const cls = ERRORS_BY_CODE[code] ?? PredictorError;
  return new cls(message, { ...details, code });
}
