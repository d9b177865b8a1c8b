#!/usr/bin/env bash
# Pipeline smoke job: the demo image runs as a job service (alias `predictor`); install the smoke
# client's few dependencies and run its checks (readiness, v1, v2, tritonclient HTTP + gRPC).
# Usage: ci/smoke-job.sh [HTTP_URL] [GRPC_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."

http=${1:-${SMOKE_HTTP:-http://predictor:8080}}
grpc=${2:-${SMOKE_GRPC:-predictor:8081}}
python=${PYTHON:-python3}
if [ ! -x .smoke-venv/bin/python ]; then
    "$python" -m venv .smoke-venv
    .smoke-venv/bin/pip install --quiet --disable-pip-version-check \
        "tritonclient[http,grpc]>=2.40" "httpx>=0.27" "numpy>=1.26" "pillow>=10" "pyyaml>=6"
fi
models=()
for model in ${SMOKE_MODELS:-general-recognition image-classification}; do models+=(--model "$model"); done
exec .smoke-venv/bin/python -m ci.smoke_client check --http "$http" --grpc "$grpc" --wait "${SMOKE_WAIT:-600}" "${models[@]}"
