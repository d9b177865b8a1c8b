"""Debian's Prometheus for the tests: promtool, and a real server on a free loopback port scraping real servers.

Both come from the Debian package `prometheus`, which ci/install-promtool.sh installs when missing. A test
writes its own configuration (targets labelled as the chart's PodMonitor labels pods: `monitor_labels`),
starts the server in a temporary directory and stops it by its process id.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devtools.procs import free_port, terminate

REPO = Path(__file__).resolve().parents[2]


def promtool() -> str:
    """promtool's path, installed by the project's script when missing (a clean CI machine has none)."""
    result = subprocess.run([str(REPO / "ci" / "install-promtool.sh")], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, f"ci/install-promtool.sh failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip().splitlines()[-1]


def prometheus_binary() -> str:
    """The `prometheus` server of the same Debian package as promtool."""
    path = Path(promtool()).with_name("prometheus")
    assert path.is_file(), f"no prometheus beside {path.parent}/promtool"
    return str(path)


def promql_label(pod_label: str) -> str:
    """The target label the Prometheus Operator makes of a pod label (podTargetLabels): non-word characters
    become underscores."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def monitor_labels(monitor: Mapping[str, Any], pod_labels: Mapping[str, str], namespace: str, pod: str) -> dict[str,
                                                                                                               str]:
    """The target labels the Prometheus Operator gives a pod scraped through the chart's PodMonitor (or
    ServiceMonitor): namespace, pod, container, job, and the monitor's podTargetLabels the pod carries."""
    labels = {"namespace": namespace, "pod": pod, "container": "kserve-container",
              "job": f"{namespace}/{monitor['metadata']['name']}"}
    for label in monitor["spec"].get("podTargetLabels", []):
        if label in pod_labels:
            labels[promql_label(label)] = pod_labels[label]
    return labels


@dataclass
class PrometheusServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql, **({"time": str(at)} if at is not None else {})}
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30).json()
        assert body["status"] == "success", (promql, body)
        result = body["data"]["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def targets(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]

    def wait_for_scrapes(self, count: int, timeout: float = 60.0) -> None:
        """Until every target has been scraped successfully `count` times after this call started."""
        deadline = time.monotonic() + timeout
        seen: dict[str, set[str]] = {}
        while True:
            for target in self.targets():
                if target["health"] == "up":
                    seen.setdefault(target["scrapeUrl"], set()).add(target["lastScrape"])
            if seen and all(len(scrapes) > count for scrapes in seen.values()) and \
                    len(seen) == len(self.targets()):
                return
            assert time.monotonic() < deadline, f"targets not scraped {count} times: {self.targets()}"
            time.sleep(0.2)

    def rules(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]


@contextlib.contextmanager
def run_prometheus(directory: Path, scrape_configs: list[dict[str, Any]], scrape_interval: str = "1s",
                   rule_files: Sequence[Path] = ()) -> Iterator[PrometheusServer]:
    """Prometheus on a free loopback port with this configuration, its data in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
              "scrape_configs": scrape_configs, "rule_files": [str(path) for path in rule_files]}
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = directory / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={config_path}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    server = PrometheusServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"prometheus exited:\n{server.log()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"prometheus not ready:\n{server.log()[-3000:]}"
            time.sleep(0.2)
        yield server
    finally:
        terminate(process, 30)
