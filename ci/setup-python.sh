#!/usr/bin/env bash
# Create .venv and install the project (and, with --test, everything the test suite needs).
# Idempotent: re-runs only when pyproject.toml or a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="lint"
requirements=()
if [[ "${1:-}" == "--test" ]]; then
  extras="test,lint"
fi
# OFA (visual-entailment) needs packages that are not in the core dependencies (fairseq builds from
# source); the server and the test suite install them so every model is served and tested.
if [[ -f ci/requirements-ofa.txt ]]; then
  requirements+=(-r ci/requirements-ofa.txt)
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml ci/requirements-*.txt 2>/dev/null | sha256sum | cut -c1-16)-${extras//,/-}"
if [[ -f "$stamp" ]]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first: the rest resolves against the installed build instead of pulling another one.
.venv/bin/python -m pip install --quiet "torch>=2.6" "torchvision>=0.21"
.venv/bin/python -m pip install --quiet -e ".[${extras}]" "${requirements[@]}"
rm -f .venv/.installed-*
touch "$stamp"
