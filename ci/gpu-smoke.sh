#!/usr/bin/env bash
# GPU smoke test (docs/gpu.md), for a machine with an NVIDIA GPU; takes under 8 minutes:
#   1. probe: a CUDA device this torch build has kernels for (exit 2 at once when there is none);
#   2. the device runner on the real GPU: real CUDA out-of-memory errors split a batch, an item larger
#      than the GPU runs on the CPU, the GPU serves again, nothing leaks, the thread is bound to the GPU;
#   3. the demo repository (every model, `python -m predictors make-demo-models`) served on the GPU:
#      each model loads and warms up at every batch size there (from the server's log);
#   4. one request per protocol (v1, v2 REST, gRPC) to every model;
#   5. an injected out-of-memory: this script's checker holds nearly all free GPU memory while a large
#      face-enhancement request runs; it must be answered (split/CPU fallback, counted in /metrics)
#      with the model ready throughout, and run on the GPU again once the memory is released;
#   6. SIGTERM: the server drains and exits 0.
# Exits non-zero on any failure (1), or 2 when no usable GPU exists. Needs the test extras
# (ci/setup-python.sh --test).
#
# Environment: PYTHON (default .venv/bin/python), GPU_SMOKE_DEVICE (default cuda:0),
# GPU_SMOKE_BUDGET_SECONDS (default 480), GPU_SMOKE_OOM_SIDE (default 1024, the oom picture's side),
# GPU_SMOKE_KEEP=1 keeps the work directory (models, server log).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[gpu-smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

python=${PYTHON:-.venv/bin/python}
device=${GPU_SMOKE_DEVICE:-cuda:0}
budget=${GPU_SMOKE_BUDGET_SECONDS:-480}
oom_side=${GPU_SMOKE_OOM_SIDE:-1024}
models=general-recognition,image-classification,face-enhancement,visual-entailment
start=$SECONDS

[ -x "$python" ] || { log "no Python at $python: run ci/setup-python.sh --test first, or set PYTHON"; exit 2; }
if ! "$python" -m ci.gpu_smoke probe --device "$device"; then
    log "no usable CUDA GPU here ($device): this smoke test runs on a GPU machine only (docs/gpu.md)"
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-smoke.XXXXXX")
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [ "${GPU_SMOKE_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

log "runner checks on $device"
timeout 180 "$python" -m ci.gpu_smoke runner --device "$device" || fail "device runner on $device"

log "writing the demo repository"
timeout 180 "$python" -m predictors make-demo-models "$work/models" >"$work/demo.log" 2>&1 \
    || { tail -n 40 "$work/demo.log" >&2; fail "make-demo-models"; }

http_port=$(free_port)
grpc_port=$(free_port)
url=http://127.0.0.1:$http_port
server_log=$work/server.log
log "serving every model on $device (log: $server_log)"
"$python" -m predictors serve --model-repository "$work/models" --device "$device" \
    --http-port "$http_port" --grpc-port "$grpc_port" --max-batch-size 8 >"$server_log" 2>&1 &
server_pid=$!

ready=0
for _ in $(seq 1 150); do  # up to ~300 s for four models to load and warm up
    kill -0 "$server_pid" 2>/dev/null || { tail -n 60 "$server_log" >&2; fail "the server exited while loading"; }
    if "$python" -c 'import sys, httpx; sys.exit(httpx.get(sys.argv[1], timeout=2).status_code != 200)' \
        "$url/v2/health/ready" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 2
done
[ "$ready" = 1 ] || { tail -n 60 "$server_log" >&2; fail "models not ready within 300 s"; }
log "every model ready after $((SECONDS - start)) s"

for model in ${models//,/ }; do
    grep -q "model $model: warmed up on cuda:[0-9]* at batch sizes \[1, 2, 4, 8\]" "$server_log" \
        || { grep "$model" "$server_log" | tail -n 20 >&2; fail "$model did not warm up on the GPU at batch sizes 1, 2, 4, 8"; }
done
log "every model warmed up on the GPU at batch sizes 1, 2, 4, 8"

log "one request per protocol to every model"
"$python" -m ci.gpu_smoke requests --url "$url" --grpc "127.0.0.1:$grpc_port" --models "$models" \
    || { tail -n 40 "$server_log" >&2; fail "requests"; }

log "injected out-of-memory on face-enhancement (${oom_side} px)"
"$python" -m ci.gpu_smoke oom --url "$url" --device "$device" --side "$oom_side" \
    || { tail -n 40 "$server_log" >&2; fail "out-of-memory fallback and recovery"; }

log "SIGTERM"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ "$status" = 0 ] || { tail -n 40 "$server_log" >&2; fail "the server exited with $status after SIGTERM"; }
if grep -q "lost its device" "$server_log"; then fail "the server reported a lost device"; fi

elapsed=$((SECONDS - start))
[ "$elapsed" -le "$budget" ] || fail "took ${elapsed} s, over the ${budget} s budget"
log "passed in ${elapsed} s"
