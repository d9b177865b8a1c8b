#!/usr/bin/env bash
# Idempotently provide a Go toolchain that builds the harnesses (tests/kserve, tests/keda) and print its
# `go` binary's path on stdout.
#
# The machine's own `go` when it is new enough; otherwise the official toolchain as the Go module proxy
# serves it (golang.org/toolchain, the module `go` itself downloads for GOTOOLCHAIN), unpacked into
# <repo>/.tools/go/: the proxy is reachable where Go's download site is not.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo/.tools}
version=${GO_VERSION:-1.26.8}
needed=$(cat "$repo"/tests/*/go.mod "$repo"/ci/*/go.mod "$repo"/ci/chart-tools/*/go.mod | sed -n 's/^go //p' | sort -V | tail -n1)

log() { printf '[install-go] %s\n' "$*" >&2; }

if [ -z "${GO_FORCE_INSTALL:-}" ] && command -v go >/dev/null; then
    have=$(go env GOVERSION | sed 's/^go//')
    if [ "$(printf '%s\n%s\n' "$needed" "$have" | sort -V | head -n1)" = "$needed" ]; then
        command -v go
        exit 0
    fi
    log "go $have on PATH is older than the harnesses' go $needed"
fi
dir=$tools/go/golang.org/toolchain@v0.0.1-go$version.linux-amd64
if [ ! -x "$dir/bin/go" ]; then
    mkdir -p "$tools/go"
    exec 9>"$tools/go/.install.lock"
    flock 9
    if [ ! -x "$dir/bin/go" ]; then
        proxy=${GOPROXY:-https://proxy.golang.org}
        proxy=${proxy%%,*}
        url=$proxy/golang.org/toolchain/@v/v0.0.1-go$version.linux-amd64.zip
        log "downloading go $version from $url"
        tmp=$(mktemp -d "$tools/go/.tmp.XXXXXX")
        trap 'rm -rf "$tmp"' EXIT
        curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
        unzip -q "$tmp/go.zip" -d "$tmp/unpacked"
        chmod +x "$tmp/unpacked/golang.org/toolchain@v0.0.1-go$version.linux-amd64/bin/"* \
            "$tmp/unpacked/golang.org/toolchain@v0.0.1-go$version.linux-amd64/pkg/tool/"*/* 2>/dev/null || true
        mkdir -p "$(dirname "$dir")"
        mv "$tmp/unpacked/golang.org/toolchain@v0.0.1-go$version.linux-amd64" "$dir"
    fi
fi
echo "$dir/bin/go"
