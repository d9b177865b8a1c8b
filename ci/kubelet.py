"""A kubelet stand-in for podman: runs one container of a rendered chart manifest the way the kubelet would.

From the pod template of a rendered Deployment (`PodContainer`): args, env incl. ``$(VAR)`` expansion and
downward-API fieldRefs/resourceFieldRefs, ports, user/group/fsGroup, read-only root, dropped capabilities,
no-new-privileges, emptyDir/PVC volumes and resource limits become `podman run` arguments; its httpGet
startup/readiness/liveness probes (`Probe`) run with their periods, thresholds and timeouts (`http_probe`,
`ProbeLoop`); `Podman` runs the commands. What it cannot emulate it refuses (`SmokeFailure`) rather than
approximate. Used by `python -m ci.smoke_client pod`; unit tests in `tests/pipeline/test_kubelet.py`.

Needs: httpx and pyyaml.
"""

from __future__ import annotations

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


class SmokeFailure(Exception):
    """A check failed, or the pod spec asks for what is not emulated; the message says which and why."""


def log(message: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


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


