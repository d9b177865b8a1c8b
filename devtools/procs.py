"""Child processes for the tests, the benchmarks and the CI scripts: a free loopback port, start a process
with its output in a log file, wait until it answers, stop it by its pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from predictors import allocator

REPO_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def memory_allocator(self) -> str:
        """The server's C allocator, read from its own memory maps."""
        return allocator.in_use(Path(f"/proc/{self.process.pid}/maps"))

    def wait_ready(self, paths: list[str], timeout: float) -> float:
        """Wait until every path answers 200; returns the seconds it took."""
        started = time.monotonic()
        pending = list(paths)
        while pending:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"{self.name}: {pending} not ready after {timeout:.0f} s:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + pending[0], timeout=2, trust_env=False).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return time.monotonic() - started

    def stop(self, timeout: float = 20.0) -> int:
        return terminate(self.process, timeout)


def terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, then SIGKILL if the process has not exited after `timeout` seconds; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def start(name: str, command: list[str], port: int, log_dir: Path, env: dict[str, str]) -> Child:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=str(REPO_DIR),
        )
    return Child(name, process, port, log_path)


def rss_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process in MB, from /proc (Linux)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)  # kB
    return out
