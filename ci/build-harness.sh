#!/usr/bin/env bash
# Build one of the Go harnesses that run Kubernetes projects' own code on what the chart and manifests/
# render, and print the binary's path on stdout:
#   kserve  tests/kserve: KServe's webhooks and reconciler, Knative's validation, Pod Security admission
#   keda    tests/keda:   KEDA's validating webhooks
#
# Idempotent: a binary is kept in <repo>/.tools/<name>-harness/<digest of its module's sources>/, so it is
# rebuilt only when go.mod, go.sum or a .go file changes. Modules come from the Go module proxy (pinned by
# go.sum) into Go's module cache, compiled packages stay in Go's build cache, both per machine.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
name=${1:?usage: ci/build-harness.sh kserve|keda}
module=$repo/tests/$name
tools=${TOOLS_DIR:-$repo/.tools}

log() { printf '[%s-harness %s] %s\n' "$name" "$(date +%H:%M:%S)" "$*" >&2; }

[ -f "$module/go.mod" ] || { log "no Go module at $module"; exit 2; }
go=$("$repo/ci/install-go.sh")
export GOTOOLCHAIN=local  # the toolchain above, never one fetched behind our back
digest=$(cd "$module" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
binary=$tools/$name-harness/$digest/$name-harness
mkdir -p "$tools/$name-harness"
# One build at a time (pytest processes and scripts may ask together).
exec 9>"$tools/$name-harness/.build.lock"
flock 9
if [ ! -x "$binary" ]; then
    log "building $module ($("$go" version | cut -d' ' -f3))"
    start=$SECONDS
    (cd "$module" && "$go" build -trimpath -o "$binary.tmp" .)
    mv "$binary.tmp" "$binary"
    log "built in $((SECONDS - start)) s"
fi
echo "$binary"
