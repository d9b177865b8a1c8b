"""The chart's Grafana dashboard: shipped only when asked, in a ConfigMap the Grafana sidecar loads, passing the
dashboard linter (ci/lint-dashboard.sh), and querying only metrics the server exports. Its queries against real
scraped series: tests/integration/test_canary_analysis.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

from predictors.telemetry.metrics import Metrics
from tests.chart.conftest import CHART, REPO, Helm
from tests.chart.test_chart import by_kind

DASHBOARD = CHART / "files" / "grafana-dashboard.json"


def rendered_dashboard(helm: Helm, *sets: str) -> tuple[dict[str, Any], dict[str, Any]]:
    (config_map,) = by_kind(helm.render(sets=("metrics.grafanaDashboard.enabled=true", *sets)), "ConfigMap")
    (text,) = config_map["data"].values()
    return config_map, json.loads(text)


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "ci" / "lint-dashboard.sh"), *map(str, paths)], capture_output=True,
                          text=True, timeout=1200)


def test_no_dashboard_unless_enabled(helm4: Helm) -> None:
    assert not [d for d in by_kind(helm4.render(), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_the_config_map_carries_the_dashboard_and_the_sidecar_label(helm4: Helm) -> None:
    config_map, dashboard = rendered_dashboard(helm4, "metrics.grafanaDashboard.annotations.grafana_folder=Serving")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Serving"}
    assert list(config_map["data"]) == ["vision-predictors.json"]
    assert dashboard == json.loads(DASHBOARD.read_text())
    relabelled, _ = rendered_dashboard(helm4, "metrics.grafanaDashboard.labels.grafana_dashboard=null",
                                       "metrics.grafanaDashboard.labels.team-dashboards=vision")
    assert relabelled["metadata"]["labels"]["team-dashboards"] == "vision"
    assert "grafana_dashboard" not in relabelled["metadata"]["labels"]


def test_the_rendered_dashboard_passes_the_linter(helm4: Helm, tmp_path: Path) -> None:
    _, dashboard = rendered_dashboard(helm4)
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(dashboard))
    result = lint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}: ok"


@pytest.mark.parametrize(("breakage", "rule"), [
    (lambda d: d["panels"][1]["targets"][0].update(expr="sum(rate(predictors_requests_total[5m]))"),
     "target-rate-interval-rule"),
    (lambda d: d["panels"][1]["fieldConfig"]["defaults"].pop("unit"), "panel-units-rule"),
    (lambda d: d["panels"][1].update(description=""), "panel-title-description-rule"),
    (lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "prometheus"}), "panel-datasource-rule"),
    (lambda d: d["templating"]["list"].pop(0), "template-datasource-rule"),
    (lambda d: d["panels"][1].update(gridPosition={"h": 8}), "schema"),
    (lambda d: d["panels"][1].update(gridPos={"h": "eight", "w": 12, "x": 0, "y": 0}), "schema"),
])
def test_the_linter_finds_what_it_checks(tmp_path: Path, breakage: Any, rule: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    breakage(dashboard)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(dashboard))
    result = lint(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{path}: {rule}: " in result.stdout, result.stdout


def test_every_query_names_metrics_the_server_exports() -> None:
    registry = prometheus_client.CollectorRegistry()
    Metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
    exported |= {"predictors_gpu_memory_used_bytes", "predictors_gpu_memory_reserved_bytes"}  # collected on CUDA
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    named = {name for query in queries for name in re.findall(r"\b(predictors_\w+)", query)}
    assert named and named <= exported, named - exported


def test_every_panel_has_a_query_and_a_unique_id() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20 and all(p["targets"] for p in panels)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in panels}
    for wanted in ("Requests per second", "Request latency percentiles", "Answers by code", "Queue depth",
                   "Batch size", "Device and precision", "Jobs by status", "Top-1 score"):
        assert wanted in titles
    assert yaml.safe_dump(dashboard)  # plain data all the way down
