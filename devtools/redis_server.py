"""A real `redis-server` (Debian's package) on a free loopback port in a temporary directory.

Started with the append-only file on and RDB snapshots off, so that a stop and a start on the same port
and directory is a Redis restart that recovers its data from the AOF, as a persistent Redis in
production would. Stopped by pid (SIGTERM: Redis flushes the AOF on a clean shutdown). Shared by the
jobs' tests and `python -m bench jobs` (bench/jobs.py), which both need the real server.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devtools.procs import free_port, terminate


@dataclass
class RedisServer:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def start(self, timeout: float = 20.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run ci/install-system-packages.sh "
                               "(make setup-test does)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--appendonly", "yes", "--save", "", "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_for_ping(timeout)
        return self

    def _wait_for_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n"
                                       f"{self.log_path.read_text(errors='replace')[-3000:]}")
                try:
                    if client.ping():  # answers LOADING (an error) while it replays its AOF
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} did not answer PING in {timeout} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> int | None:
        """Clean shutdown (SIGTERM): the AOF is flushed; the data survives a `start`."""
        if self.process is None:
            return None
        code = terminate(self.process, 20)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


@contextlib.contextmanager
def run_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
