#!/usr/bin/env python3
"""Smoke client for a running vision-predictors container, and a kubelet stand-in for podman.

Subcommands
  check   URL checks against a running server: live, per-model ready, v1 predict, v2 JSON infer,
          tritonclient HTTP (binary) and gRPC; all protocols must agree. Used by the pipeline's `smoke`
          job against the image running as a job service, and by `pod`.
  pod     Run one container of a rendered chart manifest with podman the way the kubelet runs it
          (args, env incl. $(VAR) expansion and downward-API fieldRefs/resourceFieldRefs, ports, user/group/fsGroup,
          read-only root, dropped capabilities, no-new-privileges, emptyDir/PVC volumes, resource
          limits), poll its startup/readiness/liveness probes with their periods, thresholds and
          timeouts, run `check`, then terminate it as the kubelet does (preStop, SIGTERM, SIGKILL after
          terminationGracePeriodSeconds) during a burst of requests and verify every accepted request
          was answered within the grace period and the server exited 0. Used by ci/container-smoke.sh.

Needs: httpx, numpy, pillow, tritonclient[http,grpc] (and pyyaml for `pod`). Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np


class SmokeFailure(Exception):
    """A check failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sample_images(count: int) -> list[bytes]:
    """Deterministic JPEG/PNG test images (gradients with a bit of noise)."""
    from PIL import Image

    images = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:160, 0:200]
        pixels = np.stack([(x + 40 * seed) % 256, (y * 2) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
        pixels = np.clip(pixels + rng.integers(0, 24, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG" if seed % 2 else "JPEG")
        images.append(buffer.getvalue())
    return images


def v1_body(images: list[bytes], top_k: int) -> dict[str, Any]:
    return {
        "instances": [{"image": {"b64": base64.b64encode(i).decode()}} for i in images],
        "parameters": {"top_k": top_k},
    }


# --------------------------------------------------------------------------------------------- check
def check(http_url: str, grpc_target: str | None, models: list[str], timeout: float = 120.0) -> None:
    import tritonclient.http as httpclient

    http_url = http_url.rstrip("/")
    images = sample_images(3)
    top_k = 3
    with httpx.Client(timeout=timeout) as client:
        live = client.get(f"{http_url}/v2/health/live")
        expect(live.status_code == 200, f"GET /v2/health/live: {live.status_code} {live.text[:200]}")
        listed = client.get(f"{http_url}/v2/models")
        expect(listed.status_code == 200, f"GET /v2/models: {listed.status_code}")
        for model in models:
            expect(
                model in listed.json().get("models", []), f"{model} not in /v2/models: {listed.text[:300]}"
            )
            ready = client.get(f"{http_url}/v2/models/{model}/ready")
            expect(
                ready.status_code == 200 and ready.json().get("ready") is True,
                f"{model} not ready: {ready.status_code} {ready.text[:200]}",
            )

            v1 = client.post(f"{http_url}/v1/models/{model}:predict", json=v1_body(images, top_k))
            expect(v1.status_code == 200, f"v1 {model}: {v1.status_code} {v1.text[:300]}")
            expect(bool(v1.headers.get("x-request-id")), "v1 response lacks X-Request-ID")
            predictions = v1.json()["predictions"]
            expect(len(predictions) == len(images), f"v1 {model}: {len(predictions)} predictions")
            for prediction in predictions:
                expect(
                    len(prediction["labels"]) == len(prediction["scores"]) == top_k,
                    f"v1 {model}: not top-{top_k}: {prediction}",
                )
                expect(all(0.0 <= s <= 1.0 for s in prediction["scores"]), f"v1 scores: {prediction}")

            v2 = client.post(
                f"{http_url}/v2/models/{model}/infer",
                json={
                    "inputs": [
                        {
                            "name": "image",
                            "datatype": "BYTES",
                            "shape": [len(images)],
                            "data": [base64.b64encode(i).decode() for i in images],
                        }
                    ],
                    "parameters": {"top_k": top_k},
                },
            )
            expect(v2.status_code == 200, f"v2 {model}: {v2.status_code} {v2.text[:300]}")
            outputs = {o["name"]: o for o in v2.json()["outputs"]}
            expect(
                outputs["labels"]["shape"] == [len(images), top_k], f"v2 labels shape: {outputs['labels']}"
            )
            v2_labels = np.array(outputs["labels"]["data"]).reshape(len(images), top_k)

            triton = httpclient.InferenceServerClient(
                http_url.split("://", 1)[-1], network_timeout=timeout, connection_timeout=timeout
            )
            expect(triton.is_server_live() and triton.is_model_ready(model), f"tritonclient http: {model}")
            tensor = httpclient.InferInput("image", [len(images)], "BYTES")
            tensor.set_data_from_numpy(np.array(images, dtype=object), binary_data=True)
            binary = triton.infer(
                model,
                [tensor],
                parameters={"top_k": top_k},
                outputs=[
                    httpclient.InferRequestedOutput("labels", binary_data=True),
                    httpclient.InferRequestedOutput("scores", binary_data=True),
                ],
            )
            triton.close()
            results = {
                "v2": v2_labels.tolist(),
                "tritonclient-http": [[x.decode() for x in row] for row in binary.as_numpy("labels")],
            }
            if grpc_target:
                results["tritonclient-grpc"] = grpc_labels(grpc_target, model, images, top_k, timeout)
            for i, prediction in enumerate(predictions):
                for protocol, labels in results.items():
                    expect(
                        list(labels[i]) == prediction["labels"],
                        f"{model}: {protocol} labels {labels[i]} != v1 {prediction['labels']}",
                    )
            log(f"{model}: v1, {', '.join(results)} agree on {len(images)} images")


def grpc_labels(target: str, model: str, images: list[bytes], top_k: int, timeout: float) -> list[list[str]]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target)
    try:
        expect(client.is_server_live() and client.is_model_ready(model), f"gRPC: {model} not ready")
        tensor = grpcclient.InferInput("image", [len(images)], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=object))
        result = client.infer(model, [tensor], parameters={"top_k": top_k}, client_timeout=timeout)
        return [[x.decode() for x in row] for row in result.as_numpy("labels")]
    finally:
        client.close()


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def wait_until_ready(http_url: str, models: list[str], timeout: float) -> None:
    """For the pipeline job: poll per-model readiness (the service has no kubelet in front of it)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            states = [
                httpx.get(f"{http_url.rstrip('/')}/v2/models/{m}/ready", timeout=5).status_code
                for m in models
            ]
            if all(code == 200 for code in states):
                return
            last = f"ready codes {states}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(2)
    raise SmokeFailure(f"models {models} not ready within {timeout:.0f} s ({last})")


# ------------------------------------------------------------------------------------------ pod spec
@dataclass
class Probe:
    kind: str
    path: str
    port: int
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    initial_delay: float

    @classmethod
    def from_spec(cls, kind: str, spec: dict[str, Any] | None, ports: dict[str, int]) -> Probe | None:
        if not spec:
            return None
        http_get = spec.get("httpGet")
        if not http_get:
            raise SmokeFailure(f"{kind} probe is not httpGet: {spec} (the smoke test only emulates httpGet)")
        port = http_get["port"]
        port = ports[port] if isinstance(port, str) else int(port)
        return cls(
            kind,
            http_get.get("path", "/"),
            port,
            float(spec.get("periodSeconds", 10)),
            float(spec.get("timeoutSeconds", 1)),
            int(spec.get("failureThreshold", 3)),
            int(spec.get("successThreshold", 1)),
            float(spec.get("initialDelaySeconds", 0)),
        )


@dataclass
class PodContainer:
    """The parts of a rendered Deployment's pod template the kubelet turns into a running container."""

    deployment: str
    namespace: str
    pod: dict[str, Any]
    container: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, manifest: Path, deployment: str | None, container_name: str | None) -> PodContainer:
        import yaml

        documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        deployments = [
            d
            for d in documents
            if d.get("kind") == "Deployment" and (deployment is None or d["metadata"]["name"] == deployment)
        ]
        expect(
            len(deployments) == 1,
            f"expected one Deployment {deployment or ''} in {manifest}, "
            f"found {[d['metadata']['name'] for d in deployments]}",
        )
        found = deployments[0]
        pod = found["spec"]["template"]["spec"]
        containers = [c for c in pod["containers"] if container_name in (None, c["name"])]
        expect(
            len(containers) == 1,
            f"expected one container {container_name or ''} in {found['metadata']['name']}",
        )
        container = containers[0]
        ports = {p["name"]: int(p["containerPort"]) for p in container.get("ports", []) if p.get("name")}
        return cls(
            found["metadata"]["name"], found["metadata"].get("namespace", "default"), pod, container, ports
        )

    @property
    def security(self) -> dict[str, Any]:
        # Container securityContext wins over the pod's, field by field (as in the kubelet).
        return {**self.pod.get("securityContext", {}), **self.container.get("securityContext", {})}

    @property
    def grace_seconds(self) -> float:
        return float(self.pod.get("terminationGracePeriodSeconds", 30))

    @property
    def pre_stop_sleep(self) -> float:
        pre_stop = self.container.get("lifecycle", {}).get("preStop") or {}
        if "sleep" in pre_stop:
            return float(pre_stop["sleep"]["seconds"])
        expect(not pre_stop, f"unsupported preStop handler {pre_stop} (the smoke test emulates sleep)")
        return 0.0

    def probes(self) -> dict[str, Probe]:
        probes = {}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = Probe.from_spec(kind, self.container.get(kind), self.ports)
            if probe:
                probes[kind] = probe
        return probes

    def env(self, pod_name: str, node_name: str, pod_ip: str) -> list[tuple[str, str]]:
        field_values = {
            "metadata.name": pod_name,
            "metadata.namespace": self.namespace,
            "spec.nodeName": node_name,
            "status.podIP": pod_ip,
            "status.hostIP": pod_ip,
            "spec.serviceAccountName": self.pod.get("serviceAccountName", "default"),
        }
        resolved: dict[str, str] = {}
        result = []
        for item in self.container.get("env", []):
            if "value" in item:
                value = expand(str(item["value"]), resolved)
            elif "fieldRef" in item.get("valueFrom", {}):
                path = item["valueFrom"]["fieldRef"]["fieldPath"]
                expect(path in field_values, f"env {item['name']}: unsupported fieldRef {path}")
                value = field_values[path]
            elif "resourceFieldRef" in item.get("valueFrom", {}):
                value = self.resource_field(item["name"], item["valueFrom"]["resourceFieldRef"])
            else:
                raise SmokeFailure(f"env {item['name']}: unsupported valueFrom {item.get('valueFrom')}")
            resolved[item["name"]] = value
            result.append((item["name"], value))
        expect(not self.container.get("envFrom"), "envFrom is not emulated")
        return result

    def resource_field(self, env_name: str, ref: dict[str, Any]) -> str:
        """Downward-API resourceFieldRef as the kubelet resolves it: the container's request or limit
        divided by `divisor`, rounded up; without a limit, the node's capacity (this machine's)."""
        name = self.container["name"]
        expect(ref.get("containerName", name) == name, f"env {env_name}: another container's resources")
        kind, _, resource = ref["resource"].partition(".")
        expect(kind in ("limits", "requests") and resource in ("cpu", "memory"), f"env {env_name}: {ref}")
        amount = self.container.get("resources", {}).get(kind, {}).get(resource)
        if resource == "cpu":
            cpus = quantity_cpus(amount) if amount is not None else float(os.cpu_count() or 1)
            return str(math.ceil(cpus / quantity_cpus(ref.get("divisor", "1"))))
        node_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = quantity_bytes(amount) if amount is not None else node_memory
        return str(math.ceil(memory / quantity_bytes(ref.get("divisor", "1"))))

    def podman_run_args(
        self, name: str, volumes: dict[str, Path], scratch: Path, host_ports: dict[int, int], network: str
    ) -> list[str]:
        """`podman run` arguments equivalent to this container in this pod."""
        sec = self.security
        c = self.container
        args = [
            "run",
            "--detach",
            "--name",
            name,
            "--hostname",
            name,
            "--pull",
            "never",
            "--network",
            network,
            "--init=false",
            "--stop-signal",
            "SIGTERM",
            "--no-healthcheck",
        ]  # the kubelet ignores HEALTHCHECK and uses the probes
        for container_port, host_port in host_ports.items():
            args += ["--publish", f"127.0.0.1:{host_port}:{container_port}"]
        if "runAsUser" in sec:
            args += ["--user", f"{sec['runAsUser']}:{sec.get('runAsGroup', 0)}"]
        if "fsGroup" in self.pod.get("securityContext", {}):
            args += ["--group-add", str(self.pod["securityContext"]["fsGroup"])]
        for group in self.pod.get("securityContext", {}).get("supplementalGroups", []):
            args += ["--group-add", str(group)]
        if sec.get("readOnlyRootFilesystem"):
            # podman would otherwise put tmpfs on /tmp, /var/tmp, /run: the kubelet does not.
            args += ["--read-only", "--read-only-tmpfs=false"]
        if sec.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        caps = sec.get("capabilities", {})
        for cap in caps.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            args += ["--cap-add", cap]
        seccomp = sec.get("seccompProfile", {}).get("type", "RuntimeDefault")
        expect(seccomp == "RuntimeDefault", f"seccompProfile {seccomp} not emulated")  # podman's default
        expect(not sec.get("privileged"), "privileged containers are not allowed")
        limits = c.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", str(quantity_cpus(limits["cpu"]))]
        args += self._volume_args(volumes, scratch)
        for name_, value in self.env(name, socket.gethostname(), "127.0.0.1"):
            args += ["--env", f"{name_}={value}"]
        if c.get("workingDir"):
            args += ["--workdir", c["workingDir"]]
        if c.get("command"):
            args += ["--entrypoint", json.dumps(c["command"])]
        args.append(c["image"])
        # `args` use the same $(VAR) expansion as env values.
        env_map = dict(self.env(name, socket.gethostname(), "127.0.0.1"))
        args += [expand(str(a), env_map) for a in c.get("args", [])]
        return args

    def _volume_args(self, volumes: dict[str, Path], scratch: Path) -> list[str]:
        by_name = {v["name"]: v for v in self.pod.get("volumes", [])}
        args = []
        for mount in self.container.get("volumeMounts", []):
            volume = by_name[mount["name"]]
            read_only = bool(mount.get("readOnly"))
            if "emptyDir" in volume:
                source = scratch / f"emptydir-{mount['name']}"
                source.mkdir(parents=True, exist_ok=True)
                source.chmod(0o777)  # what the kubelet creates; fsGroup owns what the pod writes
                if volume["emptyDir"].get("medium") == "Memory":
                    size = volume["emptyDir"].get("sizeLimit")
                    spec = f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=1777"
                    args += ["--mount", spec + (f",tmpfs-size={quantity_bytes(size)}" if size else "")]
                    continue
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                expect(claim in volumes, f"no host directory given for PVC {claim} (--volume {claim}=DIR)")
                source = volumes[claim]
                read_only = read_only or bool(volume["persistentVolumeClaim"].get("readOnly"))
            else:
                raise SmokeFailure(f"volume {volume} is not emulated (emptyDir and PVC are)")
            if mount.get("subPath"):
                source = source / mount["subPath"]
                expect(source.exists(), f"subPath {source} does not exist")
            args += ["--volume", f"{source}:{mount['mountPath']}:{'ro' if read_only else 'rw'}"]
        return args


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined names are replaced, $$ escapes, unknown refs stay as-is."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


def quantity_bytes(quantity: str | int) -> int:
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "K": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }
    text = str(quantity)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))


def quantity_cpus(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


# ---------------------------------------------------------------------------------------------- pod
class Podman:
    def __init__(self, executable: str, global_args: list[str]) -> None:
        self.base = [executable, *global_args]

    def run(
        self, args: list[str], check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise SmokeFailure(
                f"podman {shlex.join(args[:3])} ... failed ({result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        return result

    def state(self, name: str) -> dict[str, Any]:
        out = self.run(["inspect", "--type", "container", "--format", "{{json .State}}", name]).stdout
        return json.loads(out)


def http_probe(host: str, probe: Probe) -> tuple[bool, str]:
    """One kubelet httpGet probe: success is 200 <= status < 400 within timeoutSeconds."""
    try:
        response = httpx.get(f"http://{host}:{probe.port}{probe.path}", timeout=probe.timeout)
    except httpx.HTTPError as error:
        return False, type(error).__name__
    return 200 <= response.status_code < 400, str(response.status_code)


class ProbeLoop(threading.Thread):
    """Liveness and readiness probes running on their periods after the startup probe succeeded."""

    def __init__(self, probe: Probe, host_port: Callable[[int], int]) -> None:
        super().__init__(daemon=True, name=probe.kind)
        self.probe, self.host_port = probe, host_port
        self.failures = 0
        self.worst_streak = 0
        self.results: list[bool] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        probe = Probe(**{**self.probe.__dict__, "port": self.host_port(self.probe.port)})
        while not self.stop_event.wait(probe.period):
            ok, _ = http_probe("127.0.0.1", probe)
            self.results.append(ok)
            self.failures = 0 if ok else self.failures + 1
            self.worst_streak = max(self.worst_streak, self.failures)


def run_pod(args: argparse.Namespace) -> None:
    spec = PodContainer.load(args.manifest, args.deployment, args.container)
    podman = Podman(args.podman, shlex.split(args.podman_global_args))
    probes = spec.probes()
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        expect(kind in probes, f"the chart's container has no {kind}")
    model = spec.container["startupProbe"]["httpGet"]["path"].split("/")[3]
    volumes = {}
    for item in args.volume:
        claim, _, directory = item.partition("=")
        volumes[claim] = Path(directory).resolve()
    scratch = Path(args.scratch)
    container_ports = sorted(set(spec.ports.values()))
    host_ports = (
        {p: p for p in container_ports}
        if args.network == "host"
        else {p: free_port() for p in container_ports}
    )

    def host_port(container_port: int) -> int:
        return host_ports[container_port]

    run_args = spec.podman_run_args(
        args.name, volumes, scratch, {} if args.network == "host" else host_ports, args.network
    )
    log(f"pod {spec.deployment}: podman {' '.join(podman.base[1:])} {shlex.join(run_args)}")
    podman.run(["rm", "--force", "--ignore", args.name], check=False)
    started = time.monotonic()
    podman.run(run_args)
    try:
        _exercise(args, spec, podman, probes, model, host_port, started)
    except BaseException:
        logs = podman.run(["logs", "--tail", "80", args.name], check=False)
        log(f"container log (tail):\n{logs.stdout}{logs.stderr}")
        raise
    finally:
        if not args.keep:
            podman.run(["rm", "--force", "--time", "0", "--ignore", args.name], check=False)


def _exercise(
    args: argparse.Namespace,
    spec: PodContainer,
    podman: Podman,
    probes: dict[str, Probe],
    model: str,
    host_port: Callable[[int], int],
    started: float,
) -> None:
    # 1. the container really runs as the pod says (user, read-only root, writable emptyDir).
    _check_runtime_identity(podman, args.name, spec)

    # 2. startup probe, as the kubelet: initial delay, then every period until success or
    #    failureThreshold consecutive failures (the kubelet would then restart the container: a failure).
    startup = probes["startupProbe"]
    http = host_port(spec.ports["http"])
    time.sleep(startup.initial_delay)
    failures = 0
    while True:
        state = podman.state(args.name)
        expect(
            bool(state.get("Running")),
            f"container exited during start-up: {state.get('ExitCode')} {state.get('Error') or ''}",
        )
        ok, detail = http_probe("127.0.0.1", Probe(**{**startup.__dict__, "port": host_port(startup.port)}))
        if ok:
            break
        failures += 1
        expect(
            failures < startup.failure_threshold,
            f"startup probe failed {failures} times (last: {detail}); "
            "the kubelet would restart the container",
        )
        time.sleep(startup.period)
    log(
        f"startup probe {startup.path} succeeded after {time.monotonic() - started:.1f} s "
        f"({failures} failed attempts, budget {startup.period * startup.failure_threshold:.0f} s)"
    )

    # 3. readiness and liveness probes now run on their periods for the rest of the pod's life.
    loops = {kind: ProbeLoop(probes[kind], host_port) for kind in ("readinessProbe", "livenessProbe")}
    for loop in loops.values():
        loop.start()
    ready_deadline = time.monotonic() + probes["readinessProbe"].period * 3 + 5
    while not any(loops["readinessProbe"].results) and time.monotonic() < ready_deadline:
        time.sleep(0.2)
    expect(any(loops["readinessProbe"].results), "readiness probe never succeeded after start-up")
    log("readiness probe succeeded: the pod would receive traffic")

    # 4. protocol checks (v1, v2, tritonclient http/grpc).
    grpc = f"127.0.0.1:{host_port(spec.ports['grpc'])}" if "grpc" in spec.ports else None
    check(f"http://127.0.0.1:{http}", grpc, [model])
    for kind, loop in loops.items():
        expect(
            loop.worst_streak < probes[kind].failure_threshold,
            f"{kind} failed {loop.worst_streak} times in a row while serving",
        )

    # 5. termination under load.
    for loop in loops.values():
        loop.stop_event.set()
    _terminate_under_load(args, spec, podman, model, f"http://127.0.0.1:{http}")


def _check_runtime_identity(podman: Podman, name: str, spec: PodContainer) -> None:
    sec = spec.security
    script = (
        "import os, sys\n"
        "print(os.getuid(), os.getgid(), sorted(os.getgroups()))\n"
        "try:\n    open('/opt/venv/x', 'w')\n    print('root-writable')\n"
        "except OSError:\n    print('root-read-only')\n"
        "d = os.environ.get('TMPDIR', '/tmp')\nopen(os.path.join(d, '.smoke'), 'w').write('x')\n"
        "print('tmp-writable')\n"
    )
    result = podman.run(["exec", name, "/opt/venv/bin/python", "-c", script], check=False)
    expect(result.returncode == 0, f"exec in container failed: {result.stderr[-1000:]}")
    lines = result.stdout.split("\n")
    uid, gid = lines[0].split()[:2]
    expect(
        uid == str(sec.get("runAsUser", uid)) and gid == str(sec.get("runAsGroup", gid)),
        f"container runs as {lines[0]}, pod says {sec.get('runAsUser')}:{sec.get('runAsGroup')}",
    )
    if sec.get("readOnlyRootFilesystem"):
        expect(lines[1] == "root-read-only", "root filesystem is writable")
    expect(lines[2] == "tmp-writable", "TMPDIR is not writable")
    log(f"runs as uid/gid {uid}/{gid}, root filesystem {lines[1].split('-', 1)[1]}, TMPDIR writable")


def _terminate_under_load(
    args: argparse.Namespace, spec: PodContainer, podman: Podman, model: str, url: str
) -> None:
    """Kubelet termination during a burst: preStop sleep, SIGTERM, SIGKILL at the grace deadline.

    Requests keep coming from `concurrency` clients until the server stops accepting connections (as
    traffic would until endpoints update). Every request that got a connection must get a complete
    HTTP answer (200 for requests sent before SIGTERM; 200 or 503 after) before the grace deadline;
    refused connections were never accepted. The container must exit 0 by itself within the grace.
    """
    images = sample_images(2)
    body = v1_body(images, 3)
    grace, pre_stop = spec.grace_seconds, spec.pre_stop_sleep
    outcomes: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop_sending = threading.Event()
    sigterm_at: list[float] = []
    burst_deadline = time.monotonic() + args.max_burst_seconds

    def client_loop(index: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(grace + 30, connect=5)) as client:
            sent = 0
            while (
                not stop_sending.is_set()
                and sent < args.max_requests_per_client
                and time.monotonic() < burst_deadline
            ):
                begin = time.monotonic()
                outcome: dict[str, Any] = {"client": index, "start": begin, "before_sigterm": not sigterm_at}
                try:
                    response = client.post(f"{url}/v1/models/{model}:predict", json=body)
                    outcome.update(status=response.status_code, end=time.monotonic())
                    if response.status_code == 200:
                        outcome["ok"] = len(response.json()["predictions"]) == len(images)
                except httpx.ConnectError as error:
                    outcome.update(refused=True, error=repr(error), end=time.monotonic())
                    with lock:
                        outcomes.append(outcome)
                    return  # the server no longer accepts: this client is done
                except httpx.HTTPError as error:
                    outcome.update(error=repr(error), end=time.monotonic())
                with lock:
                    outcomes.append(outcome)
                sent += 1

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(args.load_seconds_before_stop)
    in_flight_before = len([t for t in threads if t.is_alive()])
    terminate_at = time.monotonic()
    log(
        f"terminating: preStop sleep {pre_stop:.0f} s, then SIGTERM; grace {grace:.0f} s; "
        f"{in_flight_before} clients sending"
    )
    time.sleep(pre_stop)
    sigterm_at.append(time.monotonic())
    podman.run(["kill", "--signal", "SIGTERM", args.name])
    exit_code = None
    deadline = terminate_at + grace
    while time.monotonic() < deadline:
        state = podman.state(args.name)
        if not state.get("Running"):
            exit_code = state.get("ExitCode")
            break
        time.sleep(0.2)
    exited_at = time.monotonic()
    if exit_code is None:
        podman.run(["kill", "--signal", "SIGKILL", args.name], check=False)
    stop_sending.set()
    for thread in threads:
        thread.join(timeout=60)

    answered = [o for o in outcomes if "status" in o]
    before = [o for o in outcomes if o["before_sigterm"]]
    after_sigterm = [o for o in outcomes if not o["before_sigterm"]]
    broken = [o for o in outcomes if "error" in o and not o.get("refused")]
    late = [o for o in answered if o["end"] > deadline]
    bad_status = [
        o for o in answered if o["status"] != 200 and not (o["status"] == 503 and not o["before_sigterm"])
    ]
    wrong = [o for o in answered if o["status"] == 200 and not o.get("ok")]
    refused_before = [o for o in before if o.get("refused")]
    summary = (
        f"{len(outcomes)} requests: {len(answered)} answered "
        f"({sum(o['status'] == 200 for o in answered)} x 200, "
        f"{sum(o['status'] == 503 for o in answered)} x 503), "
        f"{len(before)} sent before SIGTERM, {len(after_sigterm)} after, "
        f"{sum(bool(o.get('refused')) for o in outcomes)} refused, {len(broken)} broken; "
        f"exit code {exit_code} {exited_at - sigterm_at[0]:.1f} s after SIGTERM "
        f"({exited_at - terminate_at:.1f} s of the {grace:.0f} s grace)"
    )
    log(summary)
    expect(
        exit_code is not None,
        f"container still running after terminationGracePeriodSeconds={grace:.0f}; "
        "the kubelet would SIGKILL it",
    )
    expect(exit_code == 0, f"server exited with {exit_code} after SIGTERM")
    expect(not broken, f"accepted requests lost their answer: {broken[:3]}")
    expect(not bad_status, f"unexpected answers: {bad_status[:3]}")
    expect(not wrong, f"incomplete 200 answers: {wrong[:3]}")
    expect(not late, f"answers after the grace deadline: {late[:3]}")
    expect(not refused_before, f"requests refused before SIGTERM (during preStop): {refused_before[:3]}")
    in_flight_at_sigterm = [o for o in before if o.get("end", 0) > sigterm_at[0]]
    expect(len(in_flight_at_sigterm) >= 1, "no request was in flight at SIGTERM: the drain was not exercised")
    expect(
        sum(o.get("status") == 200 for o in before) >= args.concurrency,
        "too few requests answered during the burst",
    )
    log(f"drain ok: {len(in_flight_at_sigterm)} requests in flight at SIGTERM all answered 200 in time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="protocol checks against a running server")
    c.add_argument("--http", required=True, help="http://HOST:8080")
    c.add_argument("--grpc", help="HOST:8081 (omit to skip gRPC)")
    c.add_argument("--model", action="append", required=True)
    c.add_argument("--wait", type=float, default=0, help="first wait up to this many seconds for readiness")

    p = sub.add_parser("pod", help="run a rendered Deployment's container with podman like the kubelet")
    p.add_argument("--manifest", type=Path, required=True, help="`helm template` output")
    p.add_argument("--deployment", help="Deployment name (default: the only one)")
    p.add_argument("--container", help="container name (default: the only one)")
    p.add_argument("--volume", action="append", default=[], metavar="CLAIM=DIR", help="host dir for a PVC")
    p.add_argument("--scratch", required=True, help="host dir for emptyDirs")
    p.add_argument("--name", default="vision-predictors-smoke")
    p.add_argument("--podman", default="podman")
    p.add_argument(
        "--podman-global-args",
        default=os.environ.get("PODMAN_GLOBAL_ARGS", "--runtime=runc --cgroup-manager=cgroupfs"),
    )
    p.add_argument("--network", default="bridge", help="bridge (published on free loopback ports) or host")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--load-seconds-before-stop", type=float, default=3.0)
    p.add_argument("--max-requests-per-client", type=int, default=200)
    p.add_argument("--max-burst-seconds", type=float, default=180.0)
    p.add_argument("--keep", action="store_true", help="leave the container for debugging")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            if args.wait:
                wait_until_ready(args.http, args.model, args.wait)
            check(args.http, args.grpc, args.model)
        else:
            run_pod(args)
    except SmokeFailure as failure:
        log(f"FAILED: {failure}")
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
