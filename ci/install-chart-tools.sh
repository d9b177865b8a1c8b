#!/usr/bin/env bash
# Idempotently build the generators of the chart's reference files into <repo>/.tools/chart-tools/ and print
# their paths (stdout, one per line, KEY=PATH; safe to `eval`):
#   HELM_SCHEMA  github.com/losisin/helm-values-schema-json: values.schema.json from the `# @schema`
#                annotations of values.yaml (and the definitions in charts/vision-predictors/schema/)
#   HELM_DOCS    github.com/norwoodj/helm-docs: the values table of the chart README from the helm-docs comments
# `python -m devtools.chart` runs them. Each is pinned, with its dependencies, by the go.mod and go.sum of
# ci/chart-tools/<name>/ (a `tool` directive) and built from the Go module proxy once per pin:
# .tools/chart-tools/<name>/<version>-<digest of go.mod and go.sum>/<name>. Go comes from ci/install-go.sh.
# (Not `go install <module>@<version>`: that reads the module's version list, which the proxy may refuse.)
set -euo pipefail
shopt -s inherit_errexit
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo/.tools}/chart-tools

log() { printf '[chart-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$tools"
# One build at a time (pytest processes and scripts may ask together).
exec 9>"$tools/.build.lock"
flock 9

# build NAME PACKAGE VERSION_VARIABLE: print the path of the binary of ci/chart-tools/NAME, building it if its
# pin changed. VERSION_VARIABLE is the program's own version string, set to the pinned version.
build() {
    local name=$1 package=$2 version_variable=$3 module version digest binary go start
    module=$repo/ci/chart-tools/$name
    version=$(sed -n "s|^[[:space:]]*${package%%/cmd/*} \(v[^ ]*\).*|\1|p" "$module/go.mod")
    [ -n "$version" ] || { log "no version of ${package%%/cmd/*} in $module/go.mod"; return 1; }
    digest=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
    binary=$tools/$name/$version-$digest/$name
    if [ ! -x "$binary" ]; then
        go=$("$repo/ci/install-go.sh")
        log "building $package $version ($("$go" version | cut -d' ' -f3))"
        start=$SECONDS
        mkdir -p "$(dirname "$binary")"
        # GOTOOLCHAIN=local: the toolchain above, never one fetched behind our back; -mod=readonly: the pins as
        # committed.
        (cd "$module" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$go" build -trimpath \
            -ldflags "-s -w -X main.$version_variable=$version" -o "$binary.tmp" "$package")
        mv "$binary.tmp" "$binary"
        log "built $name in $((SECONDS - start)) s"
    fi
    echo "$binary"
}

helm_schema=$(build helm-values-schema-json github.com/losisin/helm-values-schema-json/v2 Version)
helm_docs=$(build helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs version)
printf 'HELM_SCHEMA=%s\nHELM_DOCS=%s\n' "$helm_schema" "$helm_docs"
