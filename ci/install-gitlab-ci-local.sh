#!/usr/bin/env bash
# Idempotently install gitlab-ci-local (npm; 4.60.0: later releases need Node 22) into
# <repo>/.tools/gitlab-ci-local and print GITLAB_CI_LOCAL=<path>. Its shell executor needs rsync.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo_root/.tools}
version=${GITLAB_CI_LOCAL_VERSION:-4.60.0}
dir=$tools/gitlab-ci-local
bin=$dir/node_modules/.bin/gitlab-ci-local

if [ "$("$bin" --version 2>/dev/null)" != "$version" ]; then
    printf 'installing gitlab-ci-local@%s into %s\n' "$version" "$dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "gitlab-ci-local@$version" >&2
    [ "$("$bin" --version)" = "$version" ]
fi
if ! command -v rsync >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync >&2
    else
        printf 'rsync is missing (gitlab-ci-local shell executor)\n' >&2
    fi
fi
printf 'GITLAB_CI_LOCAL=%s\n' "$bin"
