"""Configuration, all of it: the server's `Settings`, a model directory's ``predictor.json``
(`PredictorFile`), the typed model options base (`ModelOptions`), and the per-model `ModelConfig` they
resolve to (`model_config`).

Precedence, for every value a model may override (`PER_MODEL_SETTINGS`), written once in `model_config`:
the model's ``predictor.json`` > CLI flag > ``PREDICTORS_*`` environment variable > built-in default.
The built-in defaults are the `Settings` field defaults; `BatchingConfig`, `ImageLimits` and `ModelConfig`
take theirs from there (`default`), so each default is written once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from predictors.url_policy import AllowEntry

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
EventLoop = Literal["auto", "asyncio", "uvloop"]
MemoryAllocator = Literal["auto", "jemalloc", "system"]


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
    enable_grpc: bool = Field(
        True, description="Serve the gRPC v2 API (the chart turns it off under Knative, which exposes one port)."
    )
    device: str = Field("auto", description="auto (CUDA if available), cpu, cuda or cuda:N.")
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32", description="Forward-pass precision: fp32, fp16 or bf16 (autocast). fp16 only on CUDA: a model on "
        "a CPU refuses to start. bf16 only where the device has it natively (a CPU with AVX512_BF16 or AMX_BF16, a GPU "
        "from Ampere on); elsewhere the model is served in fp32 with one warning and says so in its status and "
        "metrics (docs/gpu.md)."
    )

    max_batch_size: int = Field(8, ge=1, le=1024, description="Items per forward pass; 1 disables batching.")
    max_latency_ms: float = Field(
        5.0, ge=0, le=10_000, description="How long the oldest queued item may wait for a fuller batch."
    )
    max_queue: int = Field(64, ge=1, description="Waiting items beyond which requests get 503 SERVICE_BUSY.")
    max_queue_delay_ms: float = Field(
        0, ge=0, description="Refuse (503 SERVICE_BUSY) a request whose estimated queue wait exceeds this; 0: off."
    )
    latency_target_ms: float = Field(
        0, ge=0, le=600_000,
        description="Time at the server (arrival -> answer) the batcher aims to keep each item under, choosing "
                    "batch size and wait from measured forward costs and the measured time before and after the "
                    "queue (max_batch_size stays the upper bound, max_latency_ms is not used); 0: off, the static "
                    "knobs apply.",
    )
    worker_threads: int = Field(4, ge=1, le=64, description="Threads for decoding, preprocessing, encoding.")
    cpu_forward_nice: int = Field(
        5, ge=0, le=19,
        description="Niceness added to forward passes on a CPU (the device thread and the torch threads it "
                    "starts) and to the threads that decode and prepare asynchronous jobs (any device): request "
                    "handling, the decoding of requests somebody waits for and job bookkeeping get a core "
                    "first; 0: the same priority.",
    )
    cpu_forward_idle: bool = Field(
        True,
        description="Also run forward passes on a CPU (the device thread and the torch threads it starts) under "
                    "Linux's SCHED_IDLE policy (niceness then no longer applies to them): a request's thread that "
                    "wakes takes the core from them at once instead of waiting for the rest of their time slice; "
                    "they still get every core nothing else wants. The jobs' threads keep the normal policy. "
                    "Off: niceness only.",
    )

    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Largest accepted image (width x height).")
    max_items_per_request: int = Field(64, ge=1, description="Most images/instances in one request.")

    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        "text", description="text: human-readable lines; json: one JSON object per line (for log shippers)."
    )
    access_log: bool = Field(
        True, description="Log one JSON line per request (probes and /metrics excluded)."
    )
    shutdown_grace_seconds: int = Field(
        30, ge=0, description="After SIGTERM, time allowed for in-flight requests to finish."
    )
    event_loop: EventLoop = Field(
        "auto",
        description="The event loop serving REST, gRPC and the jobs: uvloop (its bookkeeping in C), asyncio (the "
                    "standard library's), or auto: uvloop where it is installed (as KServe's --event-loop).",
    )
    memory_allocator: MemoryAllocator = Field(
        "auto",
        description="The process's C allocator: jemalloc (keeps the forward passes' freed memory for reuse instead "
                    "of faulting it in again), system (the C library's malloc), or auto: jemalloc where it is "
                    "installed (the image has it; Debian/Ubuntu: libjemalloc2). Linux only: `serve` starts itself "
                    "again, same process id, with it preloaded and MALLOC_CONF set unless you set your own; the "
                    "start-up log names it (docs/performance.md).",
    )

    # Images by URL (predictors/dataplane/image_urls.py): off unless an allowlist is given.
    image_url_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Images by URL: the hosts (images.example.com), subdomains (*.example.com) or URL prefixes "
                        "(https://cdn.example.com/public/) the server may fetch images from (comma-separated); "
                        "empty: images by URL are off.",
    )
    image_url_allow_http: bool = Field(
        False, description="Also fetch plain http:// image URLs (https only by default)."
    )
    image_url_allow_networks: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Networks (CIDR, comma-separated) an image URL's host may resolve to although they are not "
                        "public (an in-cluster image store); by default only public addresses are fetched from.",
    )
    image_url_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest image fetched from a URL (413 IMAGE_URL_TOO_LARGE above)."
    )
    image_url_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Time for fetching one image URL, redirects and slow senders included."
    )
    image_url_max_redirects: int = Field(3, ge=0, le=20, description="Redirects an image URL may take.")

    # Asynchronous jobs (predictors/jobs): off unless a Redis URL is given.
    jobs_redis_url: str | None = Field(
        None, description="Redis for asynchronous jobs (redis:// or rediss://, may hold a password); unset: off."
    )
    jobs_result_ttl_seconds: int = Field(
        86400, ge=1, description="How long a job, its result and its Idempotency-Key are kept."
    )
    jobs_max_backlog: int = Field(
        10000, ge=1, description="Unfinished jobs per model beyond which a submit gets 503 SERVICE_BUSY."
    )
    jobs_visibility_timeout_seconds: float = Field(
        300, gt=0, description="Idle time after which another process reclaims a job whose process went silent."
    )
    jobs_max_attempts: int = Field(3, ge=1, description="Runs of a job before it ends failed (4xx: never rerun).")
    jobs_consumer_name: str | None = Field(
        None, description="This process' consumer name in Redis; default: $POD_NAME, else hostname-pid."
    )

    @field_validator("models", "image_url_allow", "image_url_allow_networks", mode="before")
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
        return check_device(value)

    @field_validator("image_url_allow")
    @classmethod
    def _check_image_url_allow(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            AllowEntry.parse(entry)  # raises ValueError naming the entry
        return value

    @field_validator("image_url_allow_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as error:
                raise ValueError(f"image_url_allow_networks: {error}") from None
        return value

    @field_validator("jobs_redis_url", "jobs_consumer_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # a chart or shell that sets the variable to "" means "not set"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jobs_redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://")):
            raise ValueError("jobs_redis_url must start with redis:// or rediss://")
        return value


def check_device(value: str) -> str:
    value = value.strip().lower()
    if value in ("auto", "cpu", "cuda"):
        return value
    kind, _, index = value.partition(":")
    if kind == "cuda" and index.isdigit():
        return value
    raise ValueError("device must be auto, cpu, cuda or cuda:N")


def default(name: str) -> Any:
    """The built-in default of setting `name` (no flag, no environment variable)."""
    return Settings.model_fields[name].default


# ---- per model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = default("max_batch_size")
    max_latency_ms: float = default("max_latency_ms")
    max_queue: int = default("max_queue")
    #: refuse requests whose estimated queue wait exceeds this; 0 disables the estimate
    max_queue_delay_ms: float = default("max_queue_delay_ms")
    #: aim for queue wait + forward <= this per item (adaptive batch size and wait); 0: static knobs
    latency_target_ms: float = default("latency_target_ms")


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = default("max_image_pixels")
    #: longest side (``max_image_side``); 0 means no limit beyond max_pixels
    max_side: int = 0


class ModelOptions(BaseModel):
    """A model's ``options`` in predictor.json; each model declares its own subclass (`Options`), and an
    unknown or ill-typed option stops the server at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ModelConfig:
    """Everything a model needs besides its directory; resolved from settings and predictor.json."""

    device: str = default("device")
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    max_items_per_request: int = default("max_items_per_request")
    #: the model's options: its `ModelOptions` subclass, or a mapping the model validates into it
    options: ModelOptions | Mapping[str, Any] = field(default_factory=dict)
    demo_weights: bool = False
    #: fp32 | fp16 (CUDA only) | bf16: the forward pass runs under autocast to the reduced precision (bf16
    #: only where the device has it natively, else fp32: `predictors.precision`)
    precision: str = default("precision")


class PredictorFile(BaseModel):
    """The schema of a model directory's optional predictor.json."""

    model_config = ConfigDict(extra="forbid")
    predictor: str | None = None
    device: str | None = None
    precision: Literal["fp32", "fp16", "bf16"] | None = None
    max_batch_size: int | None = Field(default=None, ge=1, le=1024)
    max_latency_ms: float | None = Field(default=None, ge=0, le=10_000)
    max_queue: int | None = Field(default=None, ge=1)
    max_queue_delay_ms: float | None = Field(default=None, ge=0)
    latency_target_ms: float | None = Field(default=None, ge=0, le=600_000)
    #: the longest accepted image side (413 IMAGE_TOO_LARGE above it); unset: no limit beyond the pixel
    #: count, or the model's own ``options.max_image_side`` where it has one (face-enhancement)
    max_image_side: int | None = Field(default=None, ge=1)
    demo_weights: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str | None) -> str | None:
        return None if value is None else check_device(value)


#: the settings a model's predictor.json may override (same names, same meaning)
PER_MODEL_SETTINGS = ("device", "precision", "max_batch_size", "max_latency_ms", "max_queue", "max_queue_delay_ms",
                      "latency_target_ms")


def model_config(settings: Settings, file: PredictorFile, options: ModelOptions) -> ModelConfig:
    """The one merge: predictor.json wins over the server-wide setting (flag > env > default).

    `options` are the file's options already validated by the model's `Options` class. ``max_image_side``
    has one meaning, the longest accepted side: predictor.json's top-level value, else the model's option
    of that name (face-enhancement documents it there).
    """
    value = {name: getattr(settings, name) if getattr(file, name) is None else getattr(file, name)
             for name in PER_MODEL_SETTINGS}
    max_side = file.max_image_side or getattr(options, "max_image_side", None) or 0
    return ModelConfig(
        device=value["device"],
        precision=value["precision"],
        batching=BatchingConfig(max_batch_size=value["max_batch_size"], max_latency_ms=value["max_latency_ms"],
                                max_queue=value["max_queue"], max_queue_delay_ms=value["max_queue_delay_ms"],
                                latency_target_ms=value["latency_target_ms"]),
        image_limits=ImageLimits(max_pixels=settings.max_image_pixels, max_side=max_side),
        max_items_per_request=settings.max_items_per_request,
        options=options,
        demo_weights=file.demo_weights,
    )
