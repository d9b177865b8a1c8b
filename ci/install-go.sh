#!/usr/bin/env bash
# Idempotently make a Go toolchain >= 1.21 available (what ci/dashboard-lint's Grafana SDK needs) and print the
# path of its `go` on stdout.
#
# Order: $GO if executable, `go` on PATH if new enough, a Debian golang-1.2x package already installed, else
# Debian's golang-1.23-go from bookworm-backports (apt-get; needs root, as in the pipeline's Debian images;
# bookworm's own golang-go is 1.19, too old). The build machines have Go on PATH: nothing is installed there.
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }

new_enough() {  # go binary -> exit 0 when its version is >= 1.21
    local version
    version=$("$1" env GOVERSION 2>/dev/null) || return 1
    version=${version#go}
    local major=${version%%.*} rest=${version#*.}
    local minor=${rest%%.*}
    [[ $major =~ ^[0-9]+$ && ${minor%%[^0-9]*} =~ ^[0-9]+$ ]] || return 1
    (( major > 1 || ${minor%%[^0-9]*} >= 21 ))
}

for candidate in "${GO:-}" "$(command -v go || true)" /usr/lib/go-1.2[1-9]/bin/go; do
    if [[ -n $candidate && -x $candidate ]] && new_enough "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

[[ $(id -u) -eq 0 ]] || { log "no Go >= 1.21 and not root: install Go >= 1.21 and set GO"; exit 1; }
command -v apt-get >/dev/null 2>&1 || { log "no Go >= 1.21 and no apt-get: install Go >= 1.21 and set GO"; exit 1; }
# shellcheck disable=SC1091 # the OS release file of the machine
. /etc/os-release
[[ ${VERSION_CODENAME:-} == bookworm ]] || { log "no Go >= 1.21 on ${PRETTY_NAME:-this system}: install one, set GO"; exit 1; }
log "installing golang-1.23-go (Debian bookworm-backports)"
list=/etc/apt/sources.list.d/bookworm-backports.list
grep -qs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/* \
    || echo "deb http://deb.debian.org/debian bookworm-backports main" > "$list"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -q -y --no-install-recommends)
apt-get "${apt_opts[@]}" update >&2
apt-get "${apt_opts[@]}" install -t bookworm-backports golang-1.23-go >&2
echo /usr/lib/go-1.23/bin/go
