"""The TypeScript and Java SDKs as a user gets them: the `npm pack` tarball installed into an empty npm
project, the `mvn package` jar with its runtime dependencies in a directory of its own; and running code
the way a user runs it there (README examples, exactly as written).

`npm` and `mvn` come from the machine (ci/setup-sdks.sh checks them and installs the TypeScript SDK's
development packages); Maven reads and fills the machine's local repository (~/.m2), so only a cold
machine downloads from Maven Central.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TYPESCRIPT = REPO / "clients" / "typescript"
JAVA = REPO / "clients" / "java"
TSC = TYPESCRIPT / "node_modules" / ".bin" / "tsc"
NPM_QUIET = ["--no-audit", "--no-fund", "--loglevel=error"]


def run(command: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, \
        f"{' '.join(command)} (in {cwd}):\n{result.stdout[-10000:]}\n{result.stderr[-10000:]}"
    return result


def pack_typescript(destination: Path) -> Path:
    """`npm pack` (its prepack script builds dist/): the tarball a registry would serve."""
    destination.mkdir(parents=True, exist_ok=True)
    packed = run(["npm", "pack", "--json", "--pack-destination", str(destination), *NPM_QUIET], TYPESCRIPT)
    (entry,) = json.loads(packed.stdout[packed.stdout.index("["):])
    return destination / entry["filename"]


def install_typescript(tarball: Path, project: Path) -> Path:
    """An empty npm project with the tarball installed, as `npm install vision-predictors-client` would."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "package.json").write_text(json.dumps({"name": "sdk-user", "private": True, "type": "module"}))
    run(["npm", "install", str(tarball), *NPM_QUIET], project)
    return project


def package_java(destination: Path) -> Path:
    """`mvn package` (tests skipped: they need the suite's servers) and the jar's runtime dependencies, all in
    `destination`/lib: the class path a user's build would resolve from the artefact's pom."""
    run(["mvn", "-B", "-q", "-DskipTests", "package"], JAVA)
    lib = destination / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    (jar,) = (JAVA / "target").glob("vision-predictors-client-*.jar")
    shutil.copy2(jar, lib)
    run(["mvn", "-B", "-q", "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={lib}"],
        JAVA)
    return lib


def run_typescript(code: str, project: Path, name: str = "example.mts") -> subprocess.CompletedProcess[str]:
    """Type-check `code` against the installed package's declarations, then run it with node, in `project`."""
    (project / name).write_text(code)
    (project / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
        "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "lib": ["ES2022", "DOM"],
        "strict": True, "noEmit": True, "typeRoots": [str(TYPESCRIPT / "node_modules" / "@types")], "types": ["node"],
    }, "files": [name]}))
    run([str(TSC), "-p", "tsconfig.json"], project)
    script = project / Path(name).with_suffix(".mjs").name
    script.write_text(code)  # the same text: the examples are JavaScript as much as TypeScript
    return subprocess.run(["node", script.name], cwd=project, capture_output=True, text=True, timeout=300)


def java_program(snippet: str) -> str:
    """A snippet's imports on top and its statements as `main` (which may throw, as a snippet's caller would)."""
    lines = snippet.strip().splitlines()
    imports = [line for line in lines if re.match(r"import\s", line)]
    body = [line for line in lines if line not in imports]
    main = "    public static void main(String[] args) throws Exception {"
    statements = [f"        {line}" for line in body]
    return "\n".join([*imports, "public class Example {", main, *statements, "    }", "}", ""])


def run_java(snippet: str, directory: Path, lib: Path) -> subprocess.CompletedProcess[str]:
    """Java's source launcher (`java -cp 'lib/*' Example.java`) on the snippet, in `directory`."""
    (directory / "Example.java").write_text(java_program(snippet))
    return subprocess.run(["java", "-cp", f"{lib}/*", "Example.java"], cwd=directory, capture_output=True, text=True,
                          timeout=300)
