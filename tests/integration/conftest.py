"""Integration tier: the real server in a child process, called with real clients.

These tests never import the server's own code that pulls in KServe: KServe's and tritonclient's gRPC
stubs both define protobuf package `inference` and cannot live in one process. So this tier runs in
its own pytest process (see the Makefile's `test` target) and fails fast if the rule is broken.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import sdk_packages
from tests.support.server import ServerProcess, run_server


def pytest_collection_finish(session: pytest.Session) -> None:
    if "kserve" in sys.modules and "tritonclient.grpc" in sys.modules:
        raise pytest.UsageError(
            "kserve and tritonclient.grpc were both imported in one pytest process (their protobufs clash): "
            "run tests/integration in a pytest process of its own and import no predictors.models/server there"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `after_all` (checks over what the whole tier did) run last, in their collected order."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


@pytest.fixture(scope="session")
def server(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server on the demo repository (general-recognition + image-classification)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with run_server(
        ["--model-repository", str(demo_repository), "--max-batch-size", "8", "--max-latency-ms", "5"],
        log,
        wait_for=["general-recognition", "image-classification"],
    ) as process:
        yield process


@pytest.fixture(scope="session")
def typescript_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty npm project with the TypeScript SDK's `npm pack` tarball installed."""
    root = tmp_path_factory.mktemp("typescript-user")
    return sdk_packages.install_typescript(sdk_packages.pack_typescript(root / "packed"), root / "project")


@pytest.fixture(scope="session")
def java_classpath(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the Java SDK's `mvn package` jar and its runtime dependencies."""
    return sdk_packages.package_java(tmp_path_factory.mktemp("java-user"))
