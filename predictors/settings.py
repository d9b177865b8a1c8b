"""One typed settings object for the server: `PREDICTORS_*` environment variables, overridden by CLI flags.

Per-model overrides (batching, device, model options) come from the optional ``predictor.json`` in a
model directory and are resolved by :func:`predictors.models.registry.model_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Server-wide settings. Field names map to env vars `PREDICTORS_<NAME>` and to `--<name-with-dashes>`."""

    model_config = SettingsConfigDict(env_prefix="PREDICTORS_", extra="forbid", frozen=True)

    model_repository: Path | None = Field(
        None, description="Directory holding one subdirectory per model, named after the model."
    )
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Serve only these models of the repository (comma-separated); empty: all."
    )
    model_dirs: Annotated[dict[str, Path], NoDecode] = Field(
        default_factory=dict, description="NAME=PATH pairs (comma-separated): serve NAME from PATH."
    )
    http_port: int = Field(8080, ge=0, le=65535, description="REST (v1 and v2) port.")
    grpc_port: int = Field(8081, ge=0, le=65535, description="gRPC v2 port.")
    enable_grpc: bool = Field(True, description="Serve the gRPC v2 API.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="Forward-pass precision: fp32, fp16 (CUDA only) or bf16 (autocast)."
    )

    max_batch_size: int = Field(8, ge=1, le=1024, description="Items per forward pass; 1 disables batching.")
    max_latency_ms: float = Field(
        5.0, ge=0, le=10_000, description="How long the oldest queued item may wait for a fuller batch."
    )
    max_queue: int = Field(64, ge=1, description="Waiting items beyond which requests get 503 SERVICE_BUSY.")
    max_queue_delay_ms: float = Field(
        0, ge=0, description="Refuse (503 SERVICE_BUSY) a request whose estimated queue wait exceeds this; 0: off."
    )
    worker_threads: int = Field(4, ge=1, le=64, description="Threads for decoding, preprocessing, encoding.")

    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest accepted image (width x height).")
    max_items_per_request: int = Field(64, ge=1, description="Most images/instances in one request.")

    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text: human-readable lines; json: one JSON object per line (for log shippers)."
    )
    access_log: bool = Field(
        True, description="Log one JSON line per request (probes and /metrics excluded)."
    )
    shutdown_grace_seconds: int = Field(
        30, ge=0, description="After SIGTERM, time allowed for in-flight requests to finish."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _parse_model_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            value = [pair for pair in value.split(",") if pair.strip()]
        if isinstance(value, (list, tuple)):
            parsed: dict[str, str] = {}
            for pair in value:
                name, sep, path = str(pair).partition("=")
                if not sep or not name.strip() or not path.strip():
                    raise ValueError(f"expected NAME=PATH, got {pair!r}")
                parsed[name.strip()] = path.strip()
            return parsed
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu", "cuda"):
            return value
        kind, _, index = value.partition(":")
        if kind == "cuda" and index.isdigit():
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")
