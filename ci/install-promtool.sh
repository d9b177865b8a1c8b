#!/usr/bin/env bash
# Idempotently make `promtool` (Prometheus' metric linter) available and print its path on stdout.
#
# Order: $PROMTOOL if executable, `promtool` on PATH, else the Debian/Ubuntu package `prometheus`
# (apt-get; needs root, as on the CI machines). The tests call this from a session fixture, so a clean
# machine gets promtool on the first run and later runs return at once.
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }

if [[ -n "${PROMTOOL:-}" && -x "${PROMTOOL}" ]]; then
    echo "$PROMTOOL"
    exit 0
fi
if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "promtool missing and not root (no sudo): install package 'prometheus'"; exit 1; }
    sudo=(sudo -n)
fi
command -v apt-get >/dev/null 2>&1 || { log "promtool missing and no apt-get: install Prometheus' promtool and set PROMTOOL"; exit 1; }

log "installing promtool (Debian package 'prometheus')"
export DEBIAN_FRONTEND=noninteractive
# A lock held by a concurrent apt run (another test session) is waited for, not failed on.
apt_opts=(-o DPkg::Lock::Timeout=300 -q -y --no-install-recommends)
"${sudo[@]}" apt-get "${apt_opts[@]}" update >&2
"${sudo[@]}" apt-get "${apt_opts[@]}" install prometheus >&2
command -v promtool
