"""Instant queries against Prometheus' HTTP API (``GET /api/v1/query``), as the analysis needs them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx


class PrometheusError(RuntimeError):
    """Prometheus could not be reached, or refused or failed a query."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    """One Prometheus server; every query is evaluated at the same instant `at` (unix seconds) when given."""

    def __init__(self, url: str, timeout: float = 30.0, at: float | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.at = at
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def query(self, promql: str) -> list[Sample]:
        """The instant vector `promql` evaluates to (a scalar comes back as one sample without labels)."""
        params = {"query": promql}
        if self.at is not None:
            params["time"] = f"{self.at:.3f}"
        try:
            response = self._client.get(f"{self.url}/api/v1/query", params=params)
        except httpx.HTTPError as error:
            raise PrometheusError(f"Prometheus at {self.url} could not be reached: {error}") from None
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url} answered {response.status_code} without JSON "
                                  f"to {promql!r}") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {promql!r}: {body.get('errorType', response.status_code)}: "
                                  f"{body.get('error', response.text[:200])}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql!r} returned a {data['resultType']}, not an instant vector")
        return [Sample(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def scalar(self, promql: str) -> float | None:
        """The value of a query expected to return at most one sample; None when it returns none or NaN."""
        samples = self.query(promql)
        if len(samples) > 1:
            raise PrometheusError(f"{promql!r} returned {len(samples)} series; expected one")
        if not samples or math.isnan(samples[0].value):
            return None
        return samples[0].value
