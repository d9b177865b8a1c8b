"""The three SDKs (Python, TypeScript, Java) against one contract: the vectors of clients/conformance/.

This module starts what the vectors call (clients/conformance/README.md, "Servers"): the real server with
every model kind on demo weights plus the suite's odd models, jobs on a redis-server of its own, a 1 MiB body
limit, a queue of 8 and a job backlog of 1; a server with a model that never finishes loading and a Redis that is
down; a server without jobs; a page server (HTML 501); a socket that never answers; a port nothing listens
on. It resolves the vectors' references against the main server's v1 route, then runs the vectors with each
SDK's own runner: pytest here for Python, `npm test` (node --test) for TypeScript, `mvn test` (Surefire) for
Java, each told where everything is by environment variables. Every SDK must pass every vector: a runner
that ran fewer tests than there are vectors, or skipped one, fails.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.redis_server import run_redis
from predictors.models.demo import make_demo_repository
from predictors.models.face_enhancement import demo as face_enhancement
from predictors.models.visual_entailment import demo as visual_entailment
from tests.integration.test_client_sdk import write_picky_classifier
from tests.support import conformance, faults
from tests.support.server import free_port, run_server

REPO = Path(__file__).resolve().parents[2]
TYPESCRIPT = REPO / "clients" / "typescript"
JAVA = REPO / "clients" / "java"
DOCUMENT = conformance.load_vectors()
VECTORS = DOCUMENT["vectors"]
MAX_QUEUE = 8
SLOW_FORWARD_SECONDS = 3


def faulty_model(demo_repository: Path, directory: Path, **options: Any) -> Path:
    """The demo classifier's weights served by `FaultyClassifier` with `options`."""
    shutil.copytree(demo_repository / "image-classification", directory)
    (directory / "predictor.json").write_text(json.dumps(
        {"predictor": faults.FAULTY_PREDICTOR, "demo_weights": True, "options": options}))
    return directory


def serve_args(model_dirs: dict[str, Path], *extra: str) -> list[str]:
    args = ["--device", "cpu", "--log-format", "json", "--shutdown-grace-seconds", "5", *extra]
    for name, directory in model_dirs.items():
        args += ["--model-dir", f"{name}={directory}"]
    return args


class _PageOnly(http.server.SimpleHTTPRequestHandler):
    """Python's file server: its answer to a POST is an HTML page (501)."""

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Suite:
    servers: dict[str, conformance.Server]
    vectors_path: Path
    document: dict[str, Any]

    def env(self, sdk: str) -> dict[str, str]:
        """What a runner needs to know, with a run id of its own (request ids, idempotency keys)."""
        return {
            "CONFORMANCE_VECTORS": str(self.vectors_path),
            "CONFORMANCE_SERVERS": json.dumps({name: {"url": s.url, "log": str(s.log)}
                                               for name, s in self.servers.items()}),
            "CONFORMANCE_IMAGES": str(conformance.IMAGES),
            "CONFORMANCE_RUN": f"{sdk}-{uuid.uuid4().hex[:8]}",
        }


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp("conformance")
    demo = root / "demo"
    make_demo_repository(demo, ["general-recognition", "image-classification"])
    main_models = {
        "general-recognition": demo / "general-recognition",
        "image-classification": demo / "image-classification",
        "face-enhancement": face_enhancement.write(root / "gpen-one-face", seed=0),
        "face-noface": face_enhancement.write(root / "gpen-no-face", seed=1, detector="none"),
        "visual-entailment": visual_entailment.write(root / "ofa", seed=1, patch_image_size=256),
        "picky-classifier": write_picky_classifier(root / "picky"),
        "slow-classifier": faulty_model(demo, root / "slow", slow_forward_seconds=SLOW_FORWARD_SECONDS),
    }
    # models load one after the other, in this order: the one that never finishes last
    loading_models = {"image-classification": demo / "image-classification",
                      "loading-classifier": faulty_model(demo, root / "loading", load_seconds=3600)}
    cache = root / "modelscope-cache"
    cache.mkdir()
    no_log = root / "no-server.log"
    no_log.touch()
    page_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageOnly)
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    with run_redis(root / "redis") as redis, socket.socket() as silent, \
            run_server(serve_args(main_models, "--max-queue", str(MAX_QUEUE), "--max-body-bytes", str(1024 * 1024),
                                  "--max-latency-ms", "5"), root / "main.log",
                       env={"MODELSCOPE_CACHE": str(cache), "PREDICTORS_JOBS_REDIS_URL": redis.url,
                            "PREDICTORS_JOBS_MAX_BACKLOG": "1"},
                       wait_for=list(main_models), timeout=900) as main, \
            run_server(serve_args({"image-classification": demo / "image-classification"}), root / "nojobs.log",
                       env={"MODELSCOPE_CACHE": str(cache)}, wait_for=["image-classification"]) as nojobs, \
            run_server(serve_args(loading_models), root / "loading.log",
                       env={"MODELSCOPE_CACHE": str(cache),
                            "PREDICTORS_JOBS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                       wait_for=["image-classification"]) as loading:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections wait in the backlog: accepted by the kernel, never answered
        deadline = time.monotonic() + 300
        while "model loading-classifier: loading" not in loading.log():
            assert loading.process.poll() is None and time.monotonic() < deadline, loading.log()[-3000:]
            time.sleep(0.2)
        servers = {
            "main": conformance.Server(main.url, main.log_path),
            "nojobs": conformance.Server(nojobs.url, nojobs.log_path),
            "loading": conformance.Server(loading.url, loading.log_path),
            "page": conformance.Server(f"http://127.0.0.1:{page_server.server_address[1]}", no_log),
            "silent": conformance.Server(f"http://127.0.0.1:{silent.getsockname()[1]}", no_log),
            "refused": conformance.Server(f"http://127.0.0.1:{free_port()}", no_log),
        }
        resolved = conformance.resolve(DOCUMENT, main.url)
        vectors_path = root / "vectors.resolved.json"
        vectors_path.write_text(json.dumps(resolved, indent=1))
        try:
            yield Suite(servers, vectors_path, resolved)
        finally:
            page_server.shutdown()
            page_server.server_close()


@pytest.fixture(scope="module")
def python_run() -> str:
    return f"python-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("name", [vector["name"] for vector in VECTORS])
def test_python_sdk(suite: Suite, python_run: str, name: str) -> None:
    vector = next(v for v in suite.document["vectors"] if v["name"] == name)
    conformance.run_vector(suite.document, vector, suite.servers, python_run)


def mutants(suite: Suite) -> Path:
    """Four vectors made wrong on purpose (a label, an error code, the attempts, the time): every runner must fail
    each of them, so that its checks are known to bite."""
    vectors = {vector["name"]: copy.deepcopy(vector) for vector in suite.document["vectors"]}
    wrong = [vectors["recognize.path"], vectors["error.invalid-input"], vectors["error.invalid-image"],
             vectors["deadline.the-client-stops-waiting"]]
    wrong[0]["steps"][0]["expect"]["result"]["labels"][0] = "not-what-the-server-says"
    wrong[1]["steps"][0]["expect"]["error"].update({"class": "INVALID_IMAGE", "code": "INVALID_IMAGE"})
    wrong[2]["steps"][0]["access_log"] = {"$len": 2}
    wrong[3]["steps"][0]["elapsed_ms"] = {"$lt": 500}
    for vector in wrong:
        vector["name"] = f"mutant.{vector['name']}"
    path = suite.vectors_path.with_name("vectors.mutants.json")
    path.write_text(json.dumps({**suite.document, "vectors": wrong}, indent=1))
    return path


def counts(output: str) -> dict[str, int]:
    """node --test's summary (`ℹ tests 44`, or `# tests 44` in TAP)."""
    return {name: int(number) for name, number in
            re.findall(r"^[#ℹ] (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.M)}


def test_typescript_sdk(suite: Suite) -> None:
    result = subprocess.run(["npm", "test", "--silent"], cwd=TYPESCRIPT, env={**os.environ, **suite.env("typescript")},
                            capture_output=True, text=True, timeout=1200)
    summary = counts(result.stdout)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert summary["tests"] == summary["pass"] == len(VECTORS), summary
    assert summary["fail"] == summary["skipped"] == summary["todo"] == summary["cancelled"] == 0, summary


def test_java_sdk(suite: Suite) -> None:
    reports = JAVA / "target" / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)
    result = subprocess.run(["mvn", "-B", "-q", "test"], cwd=JAVA, env={**os.environ, **suite.env("java")},
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    (report,) = reports.glob("TEST-*ConformanceTest.xml")
    totals = ElementTree.parse(report).getroot().attrib
    assert int(totals["tests"]) == len(VECTORS), totals
    assert (totals["failures"], totals["errors"], totals["skipped"]) == ("0", "0", "0"), totals


def expected_errors() -> set[str]:
    return {step["expect"]["error"]["class"] for vector in VECTORS for step in vector["steps"]
            if "error" in step["expect"]}


def test_the_vectors_meet_every_error_a_client_can_meet() -> None:
    """Every error class of the SDKs (each server code a client can get, the SDKs' own) and the base class."""
    assert expected_errors() == {*conformance.ERROR_CLASSES, "base"}


def test_the_vectors_call_every_method_of_every_model() -> None:
    calls = {step["call"] for vector in VECTORS for step in vector["steps"]}
    assert calls == {"recognize", "classify", "enhance_face", "entails", "infer", "metadata", "submit", "get_job",
                     "wait", "result", "cancel"}
    kinds = {image.get("as", "bytes") for image in images_of(VECTORS)}
    assert kinds == {"path", "bytes", "stream", "blob"}
    assert len({vector["name"] for vector in VECTORS}) == len(VECTORS)


def images_of(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "file" in node:
            yield node
        for value in node.values():
            yield from images_of(value)
    elif isinstance(node, list):
        for value in node:
            yield from images_of(value)


def test_the_readme_example_is_a_vector() -> None:
    readme = (conformance.CONFORMANCE / "README.md").read_text(encoding="utf-8")
    example = json.loads(re.search(r"```json\n(.*?)```", readme, re.S)[1])  # type: ignore[index]
    vector = next(v for v in VECTORS if v["name"] == example["name"])
    assert {**example, "about": vector["about"]} == vector


def test_every_runner_fails_wrong_vectors(suite: Suite) -> None:
    path = mutants(suite)
    document = json.loads(path.read_text())
    for vector in document["vectors"]:
        with pytest.raises(AssertionError):
            conformance.run_vector(document, vector, suite.servers, f"python-mutants-{uuid.uuid4().hex[:8]}")
    typescript = subprocess.run(["npm", "test", "--silent"], cwd=TYPESCRIPT, capture_output=True, text=True,
                                env={**os.environ, **suite.env("typescript-mutants"), "CONFORMANCE_VECTORS": str(path)},
                                timeout=600)
    summary = counts(typescript.stdout)
    assert typescript.returncode != 0 and summary["tests"] == summary["fail"] == 4, typescript.stdout[-5000:]
    java = subprocess.run(["mvn", "-B", "-q", "test"], cwd=JAVA, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **suite.env("java-mutants"), "CONFORMANCE_VECTORS": str(path)})
    (report,) = (JAVA / "target" / "surefire-reports").glob("TEST-*ConformanceTest.xml")
    totals = ElementTree.parse(report).getroot().attrib
    assert java.returncode != 0 and totals["tests"] == totals["failures"] == "4", totals
