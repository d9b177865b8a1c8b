"""The REST routes of asynchronous jobs, a thin adapter onto `JobService` (docs/jobs.md).

- ``POST /v2/models/{name}/jobs`` (a v2 body: JSON or binary extension) and ``POST /v1/models/{name}:submit``
  (a v1 body: JSON, or an upload with its query string, as ``:predict`` takes) -> 202,
  ``Location: /v2/jobs/{id}``, ``{"id", "model", "status", "created_at"}``;
- ``GET /v2/jobs/{id}`` -> the job, with its ``result`` or ``error`` once it has one; with ``?wait=S`` a long
  poll: answered once the job is final, or after S seconds (at most 30) with the job as it is then;
- ``DELETE /v2/jobs/{id}`` -> cancels a queued or running job; answers the job as it is afterwards.

The routes exist on every server; without ``jobs_redis_url`` they answer 404 `JOBS_DISABLED`. The edge
(`server/middleware.py`) has read the body already (with the body limit) and access-logs every call.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from predictors.errors import JobsDisabled
from predictors.jobs.service import JobService, wait_seconds

JSON = "application/json"


def install_job_routes(app: FastAPI, service: JobService | None) -> None:
    def enabled() -> JobService:
        if service is None:
            raise JobsDisabled("asynchronous jobs are off on this server (start it with --jobs-redis-url or "
                               "PREDICTORS_JOBS_REDIS_URL)")
        return service

    async def accept(model_name: str, request: Request, protocol: str) -> Response:
        accepted = await enabled().submit(model_name, "v1" if protocol == "v1" else "v2", await request.body(),
                                          {key.lower(): value for key, value in request.headers.items()},
                                          request.url.query)
        return Response(accepted.body, status_code=202, media_type=JSON, headers={"Location": accepted.location})

    async def submit_v2(model_name: str, request: Request) -> Response:
        return await accept(model_name, request, "v2")

    async def submit_v1(model_name: str, request: Request) -> Response:
        return await accept(model_name, request, "v1")

    async def get_job(job_id: str, request: Request) -> Response:
        service = enabled()
        return Response(await service.get(job_id, wait_seconds(request.query_params.get("wait"))), media_type=JSON)

    async def cancel_job(job_id: str) -> Response:
        return Response(await enabled().cancel(job_id), media_type=JSON)

    app.add_api_route("/v2/models/{model_name}/jobs", submit_v2, methods=["POST"], status_code=202)
    app.add_api_route("/v1/models/{model_name}:submit", submit_v1, methods=["POST"], status_code=202)
    app.add_api_route("/v2/jobs/{job_id}", get_job, methods=["GET"])
    app.add_api_route("/v2/jobs/{job_id}", cancel_job, methods=["DELETE"])
