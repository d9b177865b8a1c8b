"""Run the real server as a child process on free loopback ports, the way a user would."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devtools.procs import free_port, terminate


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_log(self) -> list[dict[str, Any]]:
        """The log's JSON lines (``--log-format json``, and the access log in any format)."""
        return json_lines(self.log())

    def wait_ready(self, models: Sequence[str], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(models)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-5000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"models {pending} not ready after {timeout} s:\n{self.log()[-5000:]}")
            try:
                if httpx.get(f"{self.url}/v2/models/{pending[0]}/ready", timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> int:
        return terminate(self.process, timeout)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


@contextlib.contextmanager
def run_server(
    args: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    wait_for: Sequence[str] = (),
    timeout: float = 180.0,
    ports: tuple[int, int] | None = None,
) -> Iterator[ServerProcess]:
    """Start `predictors serve ARGS` on `ports` (REST, gRPC; default: free ones); wait until `wait_for` models
    are ready."""
    server = start_server(args, log_path, env, ports)
    try:
        server.wait_ready(wait_for, timeout)
        yield server
    finally:
        server.stop()


def start_server(args: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 ports: tuple[int, int] | None = None) -> ServerProcess:
    """`predictors serve ARGS` started on `ports` (default: free ones), not waited for; stop it with `stop`."""
    http_port, grpc_port = ports or (free_port(), free_port())
    command = [sys.executable, "-m", "predictors", "serve", "--http-port", str(http_port),
               "--grpc-port", str(grpc_port), *args]
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    return ServerProcess(process, http_port, grpc_port, log_path)
