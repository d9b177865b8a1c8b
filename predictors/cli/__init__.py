"""`predictors serve | infer | status | canary-analysis | make-demo-models | download`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from predictors.cli.infer import add_arguments as add_infer_arguments
from predictors.cli.infer import main as infer
from predictors.models.catalog import HUB_MODELS
from predictors.settings import EventLoop, MemoryAllocator, Settings


def _serve_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the model server",
        description="Serve models over KServe v1/v2 REST and v2 gRPC. Every flag has an env var "
                    "PREDICTORS_<FLAG> (e.g. PREDICTORS_MAX_BATCH_SIZE); flags win.",
    )
    serve.add_argument("--model-repository", type=Path, help="directory with one subdirectory per model")
    serve.add_argument("--models", help="comma-separated model names of the repository to serve (default: all)")
    serve.add_argument("--model-dir", dest="model_dirs", action="append", metavar="NAME=PATH",
                       help="serve model NAME from PATH (repeatable; in a pod: NAME=/mnt/models)")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--grpc-port", type=int)
    serve.add_argument("--enable-grpc", type=lambda v: v.lower() in ("1", "true", "yes"), metavar="BOOL")
    serve.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    serve.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                       help="forward-pass precision (default fp32; fp16 only on CUDA; bf16 runs "
                            "fp32 where the device has no native bf16)")
    serve.add_argument("--max-batch-size", type=int)
    serve.add_argument("--max-latency-ms", type=float)
    serve.add_argument("--max-queue", type=int)
    serve.add_argument("--max-queue-delay-ms", type=float,
                       help="refuse requests whose estimated queue wait exceeds this (default 0: off)")
    serve.add_argument("--latency-target-ms", type=float,
                       help="adapt batch size and wait so queue wait + forward stays under this; with "
                            "--max-queue-delay-ms also refuse what cannot finish in time (default 0: off)")
    serve.add_argument("--worker-threads", type=int)
    serve.add_argument("--cpu-forward-nice", type=int, help="niceness added to CPU forward passes (5)")
    serve.add_argument("--cpu-forward-idle", action=argparse.BooleanOptionalAction, default=None,
                       help="run CPU forward passes under SCHED_IDLE (default on)")
    serve.add_argument("--max-body-bytes", type=int)
    serve.add_argument("--max-image-pixels", type=int)
    serve.add_argument("--max-items-per-request", type=int)
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument("--log-format", choices=["text", "json"], help="text (default) or one JSON object per line")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=None,
                       help="one JSON line per request (default on; --no-access-log to opt out)")
    serve.add_argument("--shutdown-grace-seconds", type=int)
    serve.add_argument("--event-loop", choices=get_args(EventLoop),
                       help="auto (default: uvloop where installed), asyncio or uvloop")
    serve.add_argument("--memory-allocator", choices=get_args(MemoryAllocator),
                       help="auto (default: jemalloc where installed), jemalloc or system")
    serve.add_argument("--image-url-allow", metavar="HOSTS",
                       help="images by URL: comma-separated hosts, *.domains or URL prefixes to fetch from "
                            "(default: none, images by URL off)")
    serve.add_argument("--image-url-allow-http", action=argparse.BooleanOptionalAction, default=None,
                       help="also fetch http:// image URLs (default off: https only)")
    serve.add_argument("--image-url-allow-networks", metavar="CIDRS",
                       help="non-public networks image URLs may resolve to (default: none)")
    serve.add_argument("--image-url-max-bytes", type=int, help="largest image fetched from a URL (20 MiB)")
    serve.add_argument("--image-url-timeout-seconds", type=float, help="time to fetch one image URL (10)")
    serve.add_argument("--image-url-max-redirects", type=int, help="redirects an image URL may take (3)")
    serve.add_argument("--jobs-redis-url", metavar="URL",
                       help="Redis for asynchronous jobs, redis:// or rediss:// (default: jobs off); a URL with "
                            "a password belongs in PREDICTORS_JOBS_REDIS_URL, not on a command line")
    serve.add_argument("--jobs-result-ttl-seconds", type=int, help="keep jobs and results this long (86400)")
    serve.add_argument("--jobs-max-backlog", type=int, help="unfinished jobs per model before 503 (10000)")
    serve.add_argument("--jobs-visibility-timeout-seconds", type=float,
                       help="a job silent this long is reclaimed by another process (300)")
    serve.add_argument("--jobs-max-attempts", type=int, help="runs of a job before it fails (3)")
    serve.add_argument("--jobs-consumer-name", help="this process in Redis (default $POD_NAME, else host-pid)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predictors", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _serve_parser(subparsers)

    demo = subparsers.add_parser("make-demo-models", help="write a demo model repository (random weights)")
    demo.add_argument("directory", type=Path)
    demo.add_argument("--models", help="comma-separated subset (default: all with demo weights)")
    demo.add_argument("--overwrite", action="store_true", help="rewrite directories that exist")

    download = subparsers.add_parser("download", help="fetch published weights from the ModelScope hub")
    download.add_argument("name", choices=sorted(HUB_MODELS))
    download.add_argument("directory", type=Path)

    add_infer_arguments(subparsers.add_parser(
        "infer", help="call a model of a running server with an image and print the answer",
        description="Labels print as a table, face enhancement saves the image, entailment prints label and "
                    "scores; --json prints the result as JSON. Exit codes: 0 ok, 1 request refused (4xx), "
                    "2 usage, 3 server unreachable, 4 busy/not ready/timeout, 5 server error."))

    status = subparsers.add_parser("status", help="print each model's readiness, device, queue and latency")
    status.add_argument("--url", default="http://127.0.0.1:8080", help="the server's REST address")
    status.add_argument("--timeout", type=float, default=5.0)
    status.add_argument("--json", action="store_true", help="print the raw status document")

    from predictors.canary.command import DESCRIPTION
    from predictors.canary.command import add_arguments as add_canary_arguments

    add_canary_arguments(subparsers.add_parser(
        "canary-analysis", help="compare each model's canary with stable in Prometheus: promote, roll back or wait",
        description=DESCRIPTION))
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    fields = set(Settings.model_fields)
    overrides = {key: value for key, value in vars(args).items() if key in fields and value is not None}
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """`argv` None: this process's own command line (`serve` may then start the process again)."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args, relaunch=argv is None)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "make-demo-models":
        from predictors.models.demo import make_demo_repository

        models = [m.strip() for m in args.models.split(",")] if args.models else None
        for directory in make_demo_repository(args.directory, models, overwrite=args.overwrite):
            print(directory)
        return 0
    if args.command == "download":
        return _download(args.name, args.directory)
    if args.command == "infer":
        return infer(args)
    if args.command == "status":
        from predictors.status import main as print_status

        return print_status(args.url, args.timeout, args.json)
    if args.command == "canary-analysis":
        from predictors.canary.command import main as canary_analysis

        return canary_analysis(args)
    return 2


def _serve(args: argparse.Namespace, relaunch: bool) -> int:
    try:
        settings = settings_from_args(args)
    except ValidationError as error:
        print(f"predictors serve: invalid settings:\n{error}", file=sys.stderr)
        return 2
    from predictors import allocator

    loaded = allocator.jemalloc_loaded()
    # the lookup runs ldconfig: not for `system`, nor again in the process started with jemalloc
    library = allocator.find_jemalloc() if settings.memory_allocator != "system" and not loaded else None
    try:
        environment = allocator.relaunch_environment(settings.memory_allocator, os.environ, library, loaded)
    except allocator.AllocatorUnavailable as error:
        print(f"predictors serve: {error}", file=sys.stderr)
        return 2
    if environment is not None and relaunch:
        # the same command line, the same process id (what kubelet signals); nothing is loaded yet
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, environment)
    from predictors.telemetry.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    from predictors.models.registry import ModelSetupError, discover

    try:
        entries = discover(settings)
    except ModelSetupError as error:
        print(f"predictors serve: {error}", file=sys.stderr)
        return 2
    from predictors.server.app import PredictorServer
    from predictors.server.event_loop import EventLoopUnavailable

    try:
        server = PredictorServer(settings)
    except EventLoopUnavailable as error:
        print(f"predictors serve: {error}", file=sys.stderr)
        return 2
    return server.serve(entries)


def _download(name: str, directory: Path) -> int:
    from modelscope.hub.snapshot_download import snapshot_download

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        path = snapshot_download(HUB_MODELS[name], local_dir=str(directory))
    except Exception as error:  # noqa: BLE001 - any hub/network failure ends the command the same way
        print(f"predictors download: could not fetch {HUB_MODELS[name]}: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    print(f"downloaded {HUB_MODELS[name]} to {path}")
    print(f"serve it with: predictors serve --model-dir {name.replace('-hires', '')}={path}")
    return 0
