/**
 * Asynchronous jobs: the server queues a request and answers at once; the result is fetched later.
 *
 * `wait` sends long polls (`GET /v2/jobs/{id}?wait=W`): the server holds each until the job has ended or W
 * seconds passed, so one request usually suffices and the result arrives as soon as it exists. After an
 * answer that came back early with the job unfinished (a server older than long polls ignores `wait`; a
 * server shutting down answers held polls at once) the next request waits a `Polling` pause: short at
 * first, for fast models, then further apart.
 */

import { JobCancelledError, STATUS_BY_CODE, TimeoutError, UnexpectedResponseError, errorFor } from "./errors.js";
import { decodeDocument, type InferResult } from "./wire.js";

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
export const FINAL_STATUSES: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled"]);
/**
 * The longest one long poll asks the server to hold, in seconds (the server holds at most 30 s: ingresses
 * and load balancers commonly cut requests idle for 60 s).
 */
export const LONG_POLL_SECONDS = 20;
/** A long poll's HTTP timeout exceeds its hold by at least this, so its answer after the hold is never cut off. */
export const LONG_POLL_GRACE_MS = 5000;

/** A job as the server last described it. */
export interface Job {
  id: string;
  model: string;
  status: JobStatus;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  attempts: number;
  /** The v2 answer the synchronous route would have given (as JSON), once `succeeded`. */
  result: unknown;
  /** `{error, code}` of a failed job. */
  error: { error: string; code: string } | null;
  /** Whether the job has ended: succeeded, failed or cancelled. */
  done: boolean;
}

/** `wait`'s pauses after early unfinished answers: `firstMs`, then `factor` times longer, at most `longestMs`. */
export interface Polling {
  firstMs?: number;
  factor?: number;
  longestMs?: number;
}

export function jobFrom(document: unknown, status: number, requestId: string | null): Job {
  const job = document as Record<string, unknown> | null;
  if (job === null || typeof job !== "object" || typeof job["id"] !== "string" || typeof job["status"] !== "string") {
    throw new UnexpectedResponseError(`not a job document: ${JSON.stringify(document)?.slice(0, 300)}`,
      { status, requestId });
  }
  const jobStatus = job["status"] as JobStatus;
  return {
    id: job["id"],
    model: String(job["model"] ?? ""),
    status: jobStatus,
    createdAt: String(job["created_at"] ?? ""),
    startedAt: (job["started_at"] as string | undefined) ?? null,
    finishedAt: (job["finished_at"] as string | undefined) ?? null,
    attempts: Number(job["attempts"] ?? 0),
    result: job["result"] ?? null,
    error: (job["error"] as Job["error"] | undefined) ?? null,
    done: FINAL_STATUSES.has(jobStatus),
  };
}

export function jobId(job: Job | string): string {
  return typeof job === "string" ? job : job.id;
}

/** The requests of one `wait`: each a long poll of the time left (at most `LONG_POLL_SECONDS`). */
export class LongPolls {
  readonly jobId: string;
  readonly deadline: number;
  private pauseMs: number;
  private readonly factor: number;
  private readonly longestMs: number;
  private holdMs = 0;
  private sentAt = 0;

  constructor(job: Job | string, readonly timeoutMs: number, polling: Polling = {}) {
    this.jobId = jobId(job);
    this.deadline = performance.now() + timeoutMs;
    this.pauseMs = polling.firstMs ?? 50;
    this.factor = polling.factor ?? 1.5;
    this.longestMs = polling.longestMs ?? 2000;
  }

  /** The next request's hold in ms (`?wait=`); a `TimeoutError` when no time is left. */
  hold(current: Job | null): number {
    const now = performance.now();
    const remaining = this.deadline - now;
    if (remaining <= 0) {
      throw new TimeoutError(`job ${this.jobId} did not finish within ${this.timeoutMs} ms ` +
        `(it is ${current?.status ?? "unknown"})`, { requestId: this.jobId });
    }
    this.holdMs = Math.min(remaining, LONG_POLL_SECONDS * 1000);
    this.sentAt = now;
    return this.holdMs;
  }

  /** The pause before the next request: none after a poll held for its whole hold, else the next `Polling` pause. */
  pause(): number {
    const now = performance.now();
    if (now - this.sentAt >= this.holdMs) {
      return 0;
    }
    const pause = (0.8 + 0.2 * Math.random()) * this.pauseMs;
    this.pauseMs = Math.min(this.longestMs, this.pauseMs * this.factor);
    return Math.max(0, Math.min(pause, this.deadline - now));
  }

  path(holdMs: number): string {
    return `/v2/jobs/${encodeURIComponent(this.jobId)}?wait=${(holdMs / 1000).toFixed(3)}`;
  }
}

/** A finished job's result as an `InferResult`; its error (or cancellation) thrown as the usual error. */
export function outcome(job: Job): InferResult {
  if (job.status === "succeeded" && job.result !== null) {
    return decodeDocument(job.result, new Uint8Array(), 0, job.id);
  }
  if (job.status === "cancelled") {
    throw new JobCancelledError(`job ${job.id} was cancelled: it has no result`, { requestId: job.id });
  }
  if (job.status === "failed" && job.error !== null) {
    const code = String(job.error.code ?? "ERROR");
    throw errorFor(code, String(job.error.error ?? ""), { status: STATUS_BY_CODE[code] ?? null, requestId: job.id });
  }
  throw new UnexpectedResponseError(`job ${job.id} is ${job.status}, without a result or an error`, { requestId: job.id });
}
