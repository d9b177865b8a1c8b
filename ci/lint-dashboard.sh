#!/usr/bin/env bash
# Lint Grafana dashboard JSON files: build ci/dashboard-lint (pinned in its go.mod/go.sum: the Grafana Foundation
# SDK's strict schema decoding and validation, plus grafana/dashboard-linter's rules that apply here) into
# <repo>/.tools once, then run it. Usage: ci/lint-dashboard.sh [FILE...] (default: the chart's dashboard).
# Go >= 1.21 comes from ci/install-go.sh (the build machines have it); the first build needs the Go module proxy.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo_root/.tools}
source_dir=$repo_root/ci/dashboard-lint
binary=$tools/dashboard-lint/dashboard-lint
stamp=$tools/dashboard-lint/source.sha256

mkdir -p "$tools/dashboard-lint"
exec 9>"$tools/dashboard-lint/.build.lock"
flock 9
# Rebuilt when its source or pins change.
digest=$(cat "$source_dir/go.mod" "$source_dir/go.sum" "$source_dir"/*.go | sha256sum | cut -d' ' -f1)
if [ ! -x "$binary" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    go=$("$repo_root/ci/install-go.sh")
    printf 'building %s with %s\n' "$binary" "$("$go" version)" >&2
    (cd "$source_dir" && GOFLAGS=-mod=readonly "$go" build -trimpath -o "$binary" .)
    printf '%s\n' "$digest" > "$stamp"
fi
exec 9>&-

if [ $# -eq 0 ]; then
    set -- "$repo_root/charts/vision-predictors/files/grafana-dashboard.json"
fi
exec "$binary" "$@"
