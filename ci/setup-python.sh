#!/usr/bin/env bash
# Create .venv and install the project (and, with --test, everything the test suite needs).
# Idempotent: re-runs only when pyproject.toml or a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="lint"
if [[ "${1:-}" == "--test" ]]; then
  extras="test,lint"
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml clients/python/pyproject.toml ci/requirements-*.txt 2>/dev/null | sha256sum | cut -c1-16)-${extras//,/-}"
if [[ -f "$stamp" ]]; then
  exit 0
fi
pip=(.venv/bin/python -m pip install --quiet)
"${pip[@]}" --upgrade pip
# torch first, the pairing verified with ModelScope 1.40 and fairseq: the rest resolves against it.
"${pip[@]}" torch==2.14.1 torchvision==0.29.1
# The client SDK (vision-predictors-client, httpx only) before the server package: `predictors infer` uses it.
# It is not a declared dependency of the server package: that name is not on PyPI, so `pip install .`, a
# wheel, or the Dockerfile's dependency layer would go looking for it there.
"${pip[@]}" -e clients/python
"${pip[@]}" -e ".[${extras}]"
# OFA (visual-entailment) needs packages outside the core dependencies; fairseq is source-only and
# compiles against the installed torch, so it builds without isolation (else pip fetches a second torch).
"${pip[@]}" cython==3.3.1 wheel==0.48.0
"${pip[@]}" --no-build-isolation -r ci/requirements-ofa.txt
rm -f .venv/.installed-*
touch "$stamp"
