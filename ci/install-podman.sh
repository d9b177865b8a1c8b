#!/usr/bin/env bash
# Idempotently install what the container build/smoke needs on a Debian 12 CI machine:
# podman, runc, debootstrap (local base image), rsync (gitlab-ci-local shell executor), shellcheck,
# and the containers.conf setting this VM class needs (no default ulimits: setting them fails here).
# Needs root (CI machines run as root). Prints PODMAN=<path>.
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }

missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap rsync:rsync shellcheck:shellcheck \
            fuse-overlayfs:fuse-overlayfs; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        log "missing ${missing[*]} and not root: install them first"
        exit 1
    fi
    log "apt-get installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" uidmap slirp4netns >&2
fi

# `default_ulimits = []`: podman otherwise copies the host's nofile/nproc limits into every container,
# which this VM's runtime rejects. Only add the setting when containers.conf does not set it already.
conf=/etc/containers/containers.conf
if ! grep -qs '^[[:space:]]*default_ulimits' "$conf"; then
    if [ -w /etc/containers ] || [ "$(id -u)" = 0 ]; then
        mkdir -p /etc/containers
        if grep -qs '^\[containers\]' "$conf"; then
            sed -i '/^\[containers\]/a default_ulimits = []' "$conf"
        else
            printf '[containers]\ndefault_ulimits = []\n' >>"$conf"
        fi
        log "set default_ulimits = [] in $conf"
    fi
fi

podman --version >/dev/null
printf 'PODMAN=%s\n' "$(command -v podman)"
