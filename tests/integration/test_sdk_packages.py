"""The TypeScript and Java SDKs as packed artefacts (`npm pack`, `mvn package`), installed in a clean directory
and called from there with a three-line program against the real server, as a user would; and what each
artefact brings along (the npm package nothing, the jar Jackson only)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

from tests.conftest import encode, sample_image
from tests.support import sdk_packages
from tests.support.server import ServerProcess


def test_the_npm_package_brings_no_dependencies(typescript_project: Path) -> None:
    listed = subprocess.run(["npm", "ls", "--all", "--json"], cwd=typescript_project, capture_output=True, text=True,
                            timeout=120, check=True)
    dependencies = json.loads(listed.stdout)["dependencies"]
    assert list(dependencies) == ["vision-predictors-client"]
    assert not dependencies["vision-predictors-client"].get("dependencies")
    installed = typescript_project / "node_modules" / "vision-predictors-client"
    files = {str(path.relative_to(installed)) for path in installed.rglob("*") if path.is_file()}
    assert {"package.json", "README.md", "dist/index.js", "dist/index.d.ts", "dist/client.d.ts"} <= files
    assert not [name for name in files if name.startswith(("src/", "test/", "node_modules/"))], files


def test_the_installed_typescript_sdk_calls_the_real_server(typescript_project: Path, server: ServerProcess) -> None:
    (typescript_project / "cat.jpg").write_bytes(encode(sample_image(3), "JPEG"))
    example = (
        'import { Client } from "vision-predictors-client";\n'
        f'const client = new Client("{server.url}");\n'
        'console.log(import.meta.resolve("vision-predictors-client"), '
        'JSON.stringify((await client.classify("cat.jpg", { topK: 3 })).labels));\n'
    )
    result = sdk_packages.run_typescript(example, typescript_project, "installed.mts")
    assert result.returncode == 0, result.stderr
    location, labels = result.stdout.split()
    assert location.startswith((typescript_project / "node_modules").as_uri())  # the installed copy
    assert len(json.loads(labels)) == 3


def test_the_jar_depends_on_jackson_only(java_classpath: Path) -> None:
    jars = sorted(path.name.rsplit("-", 1)[0] for path in java_classpath.glob("*.jar"))
    assert jars == ["jackson-annotations", "jackson-core", "jackson-databind", "vision-predictors-client"], jars
    (jar,) = java_classpath.glob("vision-predictors-client-*.jar")
    with zipfile.ZipFile(jar) as archive:
        names = archive.namelist()
        pom = archive.read("META-INF/maven/io.visionpredictors/vision-predictors-client/pom.xml").decode()
    assert "io/visionpredictors/client/PredictorsClient.class" in names
    assert not [name for name in names if "Test" in name or name.startswith("com/fasterxml")]
    assert pom.count("<artifactId>jackson-databind</artifactId>") == 1


def test_the_packaged_java_sdk_calls_the_real_server(java_classpath: Path, server: ServerProcess,
                                                    tmp_path: Path) -> None:
    (tmp_path / "cat.jpg").write_bytes(encode(sample_image(3), "JPEG"))
    example = (
        "import io.visionpredictors.client.*;\n"
        f'var client = PredictorsClient.create("{server.url}");\n'
        'System.out.println(client.classify(Image.file("cat.jpg"), 3).labels().size());\n'
    )
    result = sdk_packages.run_java(example, tmp_path, java_classpath)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
