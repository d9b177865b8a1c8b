"""Smoke client for a running vision-predictors container; `pod` runs it under the kubelet stand-in
(`ci/kubelet.py`). Run from the repository root: ``python -m ci.smoke_client check|pod ...``.

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

Needs: httpx, numpy, pillow, tritonclient[http,grpc] (and pyyaml for `pod`), and the repository's
devtools/protocols.py (the integration tests' own protocol client). Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ci.kubelet import (
    PodContainer,
    Podman,
    Probe,
    ProbeLoop,
    SmokeFailure,
    expect,
    http_probe,
    log,
)
from devtools.protocols import classify_over_every_protocol, disagreements, v1_body


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


# --------------------------------------------------------------------------------------------- check
def check(http_url: str, grpc_target: str | None, models: list[str], timeout: float = 120.0) -> None:
    """Live, listed, ready, then the same top-k over every protocol (`devtools/protocols.py`, the
    integration tests' own client code), which must all agree with v1."""
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
            triton = httpclient.InferenceServerClient(http_url.split("://", 1)[-1], network_timeout=timeout)
            expect(triton.is_server_live() and triton.is_model_ready(model), f"tritonclient http: {model}")
            triton.close()
            try:
                answers = classify_over_every_protocol(http_url, grpc_target, model, images, top_k, timeout)
            except AssertionError as failure:
                raise SmokeFailure(str(failure)) from None
            expect(len(answers.v1) == len(images), f"v1 {model}: {len(answers.v1)} predictions")
            for prediction in answers.v1:
                expect(
                    len(prediction["labels"]) == len(prediction["scores"]) == top_k,
                    f"v1 {model}: not top-{top_k}: {prediction}",
                )
                expect(all(0.0 <= s <= 1.0 for s in prediction["scores"]), f"v1 scores: {prediction}")
            problems = disagreements(answers)
            expect(not problems, f"{model}: the protocols disagree: {problems[:3]}")
            log(f"{model}: v1, {', '.join(answers.others)} agree on {len(images)} images")


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
    # the chart names its REST port http (deployment mode) or http1 (KServe's convention)
    http = host_port(spec.ports["http"] if "http" in spec.ports else spec.ports["http1"])
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
    body = v1_body(images, top_k=3)
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
        prog="python -m ci.smoke_client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
