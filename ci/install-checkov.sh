#!/usr/bin/env bash
# Idempotently create <repo>/.tools/checkov-venv with checkov and print the checkov path.
# checkov pins packaging<24, so it lives in its own venv, never in the project's.
# Output (stdout): CHECKOV=...
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo_root/.tools}
venv=$tools/checkov-venv
spec=${CHECKOV_SPEC:-checkov}
python=${PYTHON:-python3}

mkdir -p "$tools"
exec 9>"$tools/.install-checkov.lock"
flock 9
if ! "$venv/bin/checkov" --version >/dev/null 2>&1; then
    printf 'installing %s into %s\n' "$spec" "$venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
    "$venv/bin/checkov" --version >/dev/null
fi
printf 'CHECKOV=%s\n' "$venv/bin/checkov"
