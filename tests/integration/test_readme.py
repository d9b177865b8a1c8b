"""Every request example of the README's "Calling it" section, of docs/api.md and docs/jobs.md, and every example
of the TypeScript and Java SDKs' READMEs, run exactly as written.

The examples call `localhost:8080` (REST) and `localhost:8081` (gRPC) and read `cat.jpg` (and `face.jpg`) from
the working directory, as a user who just ran `make serve` would: so the server here serves all four demo models
on those ports (with jobs on, on a redis-server of its own), and the examples run in a directory holding those
pictures and a `.venv` link to this checkout's virtualenv. Shell blocks run in one bash process, command by
command; a curl command passes when it printed a JSON answer without an error (an inference answer in "Calling
it", a job in "Asynchronous jobs"), or, when it saves its answer (``-o FILE``), when FILE is an image and the
response head it printed (if any, ``-D -``) says 200. Python blocks run with the virtualenv's interpreter and must
exit 0. TypeScript blocks are type-checked against the declarations of the SDK's `npm pack` tarball installed in a
clean npm project, then run there with node (ES modules: top-level await); Java blocks run with Java's source
launcher on the `mvn package` jar and its dependencies, their imports on top and their statements as `main`. Each
must exit 0 and print its result.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from devtools.redis_server import RedisServer, run_redis
from tests.conftest import encode, sample_image
from tests.support import sdk_packages
from tests.support.server import ServerProcess, run_server

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: where the documented examples are: (file, the section holding them, or None for the whole page)
SOURCES = {"README.md": (README, "Calling it"), "docs/api.md": (REPO / "docs" / "api.md", None),
           "docs/jobs.md": (REPO / "docs" / "jobs.md", None)}
PORTS = (8080, 8081)
SEPARATOR = "=====README-EXAMPLE-BOUNDARY====="
SDK_READMES = {"typescript": REPO / "clients" / "typescript" / "README.md",
               "java": REPO / "clients" / "java" / "README.md"}
JOBS = "docs/jobs.md"


def readme_examples(source: str = "README.md") -> list[tuple[str, str]]:
    """(language, code) of every fenced block of a documented example source (`SOURCES`)."""
    path, section = SOURCES[source]
    body = path.read_text(encoding="utf-8")
    if section is not None:
        start = body.index(f"## {section}\n")
        end = body.find("\n## ", start + 1)
        body = body[start:end if end != -1 else None]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", body, re.S)]


def sdk_examples(language: str) -> list[tuple[str, str]]:
    """(where, code) of every `language` block of the documented example sources and of that SDK's own README."""
    examples = [(f"{source} #{index}", code) for source in SOURCES
                for index, (lang, code) in enumerate(readme_examples(source)) if lang == language]
    text = SDK_READMES[language].read_text(encoding="utf-8")
    examples += [(f"clients/{language}/README.md #{index}", match[1])
                 for index, match in enumerate(re.finditer(rf"```{language}\n(.*?)```", text, re.S))]
    return examples


def shell_commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    commands, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line + "\n"
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def saved_file(command: str) -> str | None:
    """The file a curl command writes its answer to (``-o FILE``), if it does."""
    match = re.search(r"(?:^|\s)(?:-o|--output)\s+(\S+)", command)
    return match[1] if match else None


def assert_saved_image(path: Path, printed: str) -> None:
    assert path.is_file(), f"{path.name} was not written"
    with Image.open(path) as image:  # an error answer saved instead would be JSON, not an image
        image.verify()
    if printed.strip():
        assert printed.startswith("HTTP/") and printed.split()[1] == "200", printed


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def readme_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("readme-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory, readme_redis: RedisServer) -> Iterator[ServerProcess]:
    busy = [port for port in PORTS if not port_is_free(port)]
    if busy:
        pytest.fail(f"the README's examples call localhost:8080/8081, but port(s) {busy} are in use here: "
                    "stop what listens there and run again")
    repository = tmp_path_factory.mktemp("readme-models")
    subprocess.run([sys.executable, "-m", "predictors", "make-demo-models", str(repository)], check=True,
                   capture_output=True, timeout=600)
    log = tmp_path_factory.mktemp("readme-server") / "server.log"
    with run_server(["--model-repository", str(repository)], log, ports=PORTS,
                    env={"PREDICTORS_JOBS_REDIS_URL": readme_redis.url},
                    wait_for=["general-recognition", "image-classification", "face-enhancement",
                              "visual-entailment"], timeout=600) as server:
        yield server


@pytest.fixture(scope="module")
def user_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("readme-user")
    (directory / "cat.jpg").write_bytes(encode(sample_image(7, (320, 240)), "JPEG"))
    (directory / "face.jpg").write_bytes(encode(sample_image(8, (48, 48)), "JPEG"))
    (directory / ".venv").symlink_to(REPO / ".venv")
    return directory


@pytest.mark.parametrize("source", list(SOURCES))
def test_the_source_has_examples(source: str) -> None:
    languages = [language for language, _ in readme_examples(source)]
    assert "bash" in languages and "python" in languages


def examples_of(language: str) -> list[tuple[str, int]]:
    return [(source, index) for source in SOURCES
            for index, (lang, _) in enumerate(readme_examples(source)) if lang == language]


@pytest.mark.parametrize(("source", "index"), examples_of("bash"))
def test_shell_example(readme_server: ServerProcess, user_directory: Path, source: str, index: int) -> None:
    commands = shell_commands(readme_examples(source)[index][1])
    for command in commands:  # a file left by another example must not pass for this one's answer
        if command.lstrip().startswith("curl") and (name := saved_file(command)):
            (user_directory / name).unlink(missing_ok=True)
    script = "set -e\n" + "".join(f"{command}echo '{SEPARATOR}'\n" for command in commands)
    result = subprocess.run(["bash", "-c", script], cwd=user_directory, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    outputs = result.stdout.split(SEPARATOR + "\n")[:-1]
    assert len(outputs) == len(commands)
    for command, output in zip(commands, outputs, strict=True):
        if command.lstrip().startswith("curl") and (name := saved_file(command)):
            assert_saved_image(user_directory / name, output)
        elif command.lstrip().startswith("curl"):
            answer = json.loads(output)
            assert "error" not in answer, f"{command}\n-> {output}"
            if source == JOBS:
                assert answer["status"] in ("queued", "running", "succeeded"), output
                assert "result" in answer or answer["status"] != "succeeded"
            else:
                assert "predictions" in answer or "outputs" in answer
        elif "predictors infer" in command:
            assert output.strip(), f"{command} printed nothing"


@pytest.mark.parametrize(("source", "index"), examples_of("python"))
def test_python_example(readme_server: ServerProcess, user_directory: Path, source: str, index: int) -> None:
    code = readme_examples(source)[index][1]
    result = subprocess.run([str(user_directory / ".venv" / "bin" / "python"), "-c", code], cwd=user_directory,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{code}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), "the example prints its result"


@pytest.fixture(scope="module")
def typescript_user(user_directory: Path, typescript_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's pictures in an npm project where the SDK's packed tarball is installed."""
    directory = tmp_path_factory.mktemp("readme-typescript-user")
    for name in ("package.json", "node_modules"):
        (directory / name).symlink_to(typescript_project / name)
    for picture in ("cat.jpg", "face.jpg"):
        (directory / picture).write_bytes((user_directory / picture).read_bytes())
    return directory


@pytest.mark.parametrize(("where", "code"), sdk_examples("typescript"), ids=[w for w, _ in sdk_examples("typescript")])
def test_typescript_example(readme_server: ServerProcess, typescript_user: Path, where: str, code: str) -> None:
    result = sdk_packages.run_typescript(code, typescript_user)
    assert result.returncode == 0, f"{where}\n{code}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), "the example prints its result"


def test_every_sdk_readme_has_examples() -> None:
    for language in SDK_READMES:
        assert len([where for where, _ in sdk_examples(language) if where.startswith("clients/")]) >= 4, language
        assert any(where.startswith("README.md") for where, _ in sdk_examples(language)), language


@pytest.mark.parametrize(("where", "code"), sdk_examples("java"), ids=[w for w, _ in sdk_examples("java")])
def test_java_example(readme_server: ServerProcess, user_directory: Path, java_classpath: Path, where: str,
                      code: str) -> None:
    result = sdk_packages.run_java(code, user_directory, java_classpath)
    assert result.returncode == 0, f"{where}\n{code}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), "the example prints its result"
