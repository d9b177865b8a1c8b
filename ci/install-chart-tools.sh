#!/usr/bin/env bash
# Idempotently build the generators of the chart's reference files into <repo>/.tools/chart-tools/ and print
# their paths (stdout, one per line, KEY=PATH; safe to `eval`):
#   HELM_SCHEMA  github.com/losisin/helm-values-schema-json: values.schema.json from the `# @schema`
#                annotations of values.yaml (and the fragments in charts/vision-predictors/schema/)
#   HELM_DOCS    github.com/norwoodj/helm-docs: the values table of the chart README from the `# --` comments
# `python -m devtools.chart` runs them; each is `go install`ed at its pinned version from the Go module proxy
# (checksums from the Go checksum database), once per version: .tools/chart-tools/<name>-<version>/<name>.
# Set the versions with HELM_SCHEMA_VERSION / HELM_DOCS_VERSION; Go comes from ci/install-go.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo/.tools}/chart-tools
schema_version=${HELM_SCHEMA_VERSION:-v2.3.1}
docs_version=${HELM_DOCS_VERSION:-v1.14.2}

log() { printf '[chart-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$tools"
# One build at a time (pytest processes and scripts may ask together).
exec 9>"$tools/.build.lock"
flock 9

# install NAME PACKAGE VERSION LDFLAGS: print the binary's path, building it first if this version is missing.
install() {
    local name=$1 package=$2 version=$3 ldflags=$4 dir go start
    dir=$tools/$name-$version
    if [ ! -x "$dir/$name" ]; then
        go=$("$repo/ci/install-go.sh")
        log "building $package@$version ($("$go" version | cut -d' ' -f3))"
        start=$SECONDS
        rm -rf "$dir.tmp"
        # GOTOOLCHAIN=local: the toolchain above, never one fetched behind our back.
        GOTOOLCHAIN=local GOBIN="$dir.tmp" "$go" install -trimpath -ldflags "$ldflags" "$package@$version" >&2
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
        log "built $name in $((SECONDS - start)) s"
    fi
    echo "$dir/$name"
}

helm_schema=$(install helm-values-schema-json github.com/losisin/helm-values-schema-json/v2 "$schema_version" \
    "-s -w -X main.Version=$schema_version")
helm_docs=$(install helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$docs_version" \
    "-s -w -X main.version=${docs_version#v}")
printf 'HELM_SCHEMA=%s\nHELM_DOCS=%s\n' "$helm_schema" "$helm_docs"
