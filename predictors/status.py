"""`predictors status`: is it up, is it fast — per model, from the server's own status endpoint.

The server answers ``GET /v2/predictors/status`` (`server_status`) with each model's readiness, device,
precision (effective and requested), queue depth, in-flight requests and its latency over the last
minutes (kept in memory, not derived from the cumulative histograms). Probes of liveness come from
``/v2/health/live``. This module imports neither KServe nor torch: the command runs anywhere httpx does.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import httpx

STATUS_PATH = "/v2/predictors/status"


def server_status(models: Iterable[Any], metrics: Any, in_flight: Callable[[str], int]) -> dict[str, Any]:
    """The status document (server side); `models` are the server's `ModelRuntime`s, `in_flight` reads
    a model's in-flight gauge."""
    described = []
    for model in models:
        described.append({
            "name": model.name,
            "predictor": getattr(model, "predictor_name", ""),
            "ready": bool(model.ready),
            "device": str(model.device),
            "precision": _precision(model),
            "queue_depth": int(model.queue_depth),
            "max_queue": model.config.batching.max_queue,
            "max_batch_size": model.config.batching.max_batch_size,
            "in_flight": in_flight(model.name),
            "load_error": model.load_error,
            "recent": metrics.recent(model.name).summary(),
        })
    return {"ready": bool(described) and all(m["ready"] for m in described), "models": described}


def _precision(model: Any) -> dict[str, str]:
    """What the forward pass runs in (`effective`), what the setting asked for, and why they differ."""
    resolved = model.precision
    if resolved is None:  # not loaded (yet, or it failed before the device was known)
        return {"requested": model.config.precision, "effective": "", "reason": ""}
    return {"requested": resolved.requested, "effective": resolved.effective, "reason": resolved.reason}


def fetch_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    base = url.rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        live = client.get(f"{base}/v2/health/live")
        response = client.get(f"{base}{STATUS_PATH}")
        response.raise_for_status()
        status: dict[str, Any] = response.json()
    status["live"] = live.status_code == 200
    return status


def render(status: dict[str, Any], url: str) -> str:
    header = ("MODEL", "READY", "DEVICE", "PRECISION", "QUEUE", "IN-FLIGHT", "REQ/ERR", "P50 ms", "P95 ms")
    rows = [header]
    notes = []
    for model in status.get("models", []):
        recent = model.get("recent") or {}
        rows.append((
            model["name"],
            "yes" if model["ready"] else "no",
            model.get("device", "?"),
            (model.get("precision") or {}).get("effective") or "-",
            f"{model.get('queue_depth', 0)}/{model.get('max_queue', '?')}",
            str(model.get("in_flight", 0)),
            f"{recent.get('requests', 0)}/{recent.get('errors', 0)}",
            _number(recent.get("p50_ms")),
            _number(recent.get("p95_ms")),
        ))
        precision = model.get("precision") or {}
        if precision.get("reason"):
            notes.append(f"{model['name']}: precision {precision['requested']} asked for, serving "
                         f"{precision['effective']}: {precision['reason']}")
        if model.get("load_error"):
            notes.append(f"{model['name']}: failed to load: {model['load_error']}")
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [f"server {url}: live={'yes' if status.get('live') else 'no'} "
             f"ready={'yes' if status.get('ready') else 'no'}"]
    lines += ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    window = next((m["recent"]["window_seconds"] for m in status.get("models", []) if m.get("recent")), None)
    if window:
        lines.append(f"(REQ/ERR and latency: successful requests of the last {int(window)} s)")
    lines += notes
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(url: str, timeout: float = 5.0, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Print the status; exit 0 when every model is ready, 1 when not, 2 when the server can't be asked."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no per-request lines in the command's output
    try:
        status = fetch_status(url, timeout)
    except (httpx.HTTPError, ValueError) as error:
        print(f"predictors status: cannot read {url.rstrip('/')}{STATUS_PATH}: {error}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(status, indent=2), file=out)
    else:
        print(render(status, url), file=out)
    return 0 if status.get("ready") else 1
