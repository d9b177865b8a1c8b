"""The kubelet stand-in (`ci/kubelet.py`): a rendered pod spec becomes the podman arguments, env and probes
the kubelet would use."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from ci import kubelet
from tests.pipeline.conftest import REPO


@pytest.fixture(scope="module")
def smoke_pod(helm4: str, tmp_path_factory: pytest.TempPathFactory) -> kubelet.PodContainer:
    out = tmp_path_factory.mktemp("render") / "rendered.yaml"
    result = subprocess.run(
        [
            helm4,
            "template",
            "smoke",
            "charts/vision-predictors",
            "--namespace",
            "smoke",
            "-f",
            "tests/pipeline/smoke-values.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out.write_text(result.stdout)
    return kubelet.PodContainer.load(out, "smoke-general-recognition", None)


def test_podman_arguments_follow_the_rendered_pod_spec(
    smoke_pod: kubelet.PodContainer, tmp_path: Path
) -> None:
    (tmp_path / "pvc" / "general-recognition").mkdir(parents=True)
    args = smoke_pod.podman_run_args(
        "ctr", {"smoke-models": tmp_path / "pvc"}, tmp_path / "scratch", {8080: 18080, 8081: 18081}, "bridge"
    )
    joined = shlex.join(args)
    assert "--user 1001:1001" in joined and "--group-add 1001" in joined
    assert "--read-only --read-only-tmpfs=false" in joined
    assert "--cap-drop ALL" in joined and "--security-opt no-new-privileges" in joined
    assert f"--volume {tmp_path}/scratch/emptydir-tmp:/tmp:rw" in joined
    assert f"--volume {tmp_path}/pvc/general-recognition:/mnt/models:ro" in joined
    assert "--env PREDICTORS_SHUTDOWN_GRACE_SECONDS=30" in joined and re.search(r"--env HOME=/tmp\b", joined)
    assert "--memory 3221225472" in joined
    # downward-API resourceFieldRef limits.cpu (limit "2", divisor 1) as the kubelet resolves it
    assert "--env OMP_NUM_THREADS=2" in joined and "--env MKL_NUM_THREADS=2" in joined
    assert args[-4:] == [
        "localhost/vision-predictors:smoke",
        "serve",
        "--model-dir",
        "general-recognition=/mnt/models",
    ]
    probes = smoke_pod.probes()
    assert probes["startupProbe"].path == "/v2/models/general-recognition/ready"
    assert probes["livenessProbe"].path == "/v2/health/live"
    assert smoke_pod.grace_seconds == 40 and smoke_pod.pre_stop_sleep == 5


def test_resource_field_ref_rounds_up_like_the_kubelet() -> None:
    container = {"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "3Gi"}}}
    pod = kubelet.PodContainer("d", "ns", {"containers": [container]}, container)
    assert pod.resource_field("X", {"resource": "limits.cpu", "divisor": "1"}) == "2"
    assert pod.resource_field("X", {"resource": "limits.memory", "divisor": "1Mi"}) == "3072"
    with pytest.raises(kubelet.SmokeFailure):
        pod.resource_field("X", {"containerName": "other", "resource": "limits.cpu"})


def test_kubernetes_env_expansion() -> None:
    env = {"A": "1", "B": "x"}
    assert kubelet.expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-x-$(C)-$(A)"
    assert kubelet.quantity_bytes("3Gi") == 3 * 2**30 and kubelet.quantity_cpus("500m") == 0.5


def test_probes_follow_the_spec_and_refuse_what_is_not_emulated() -> None:
    probe = kubelet.Probe.from_spec(
        "readinessProbe", {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2}, {"http": 8080})
    assert probe is not None and (probe.port, probe.path, probe.period, probe.failure_threshold) == (
        8080, "/ready", 2.0, 3)
    assert kubelet.Probe.from_spec("livenessProbe", None, {}) is None
    with pytest.raises(kubelet.SmokeFailure, match="not httpGet"):
        kubelet.Probe.from_spec("livenessProbe", {"exec": {"command": ["true"]}}, {})


def test_http_probe_success_is_a_2xx_or_3xx_within_the_timeout() -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(302 if self.path == "/moved" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        probe = kubelet.Probe("readinessProbe", "/moved", port, 1, 2, 3, 1, 0)
        assert kubelet.http_probe("127.0.0.1", probe) == (True, "302")
        assert kubelet.http_probe("127.0.0.1", kubelet.Probe(**{**probe.__dict__, "path": "/x"})) == (False, "503")
    finally:
        server.shutdown()
        server.server_close()
