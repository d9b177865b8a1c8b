#!/usr/bin/env bash
# Idempotently build a local Debian 12 + Python 3.11 base image with debootstrap (no image registry is
# reachable on our CI machines) and import it into podman as $1 (default
# localhost/vision-predictors-base:bookworm). It stands in for the pipeline's BASE_IMAGE
# (python:3.11-slim-bookworm / an nvidia/cuda runtime image) in the local smoke build.
# Prints BASE_IMAGE=<name>.
set -euo pipefail

image=${1:-${BASE_IMAGE:-localhost/vision-predictors-base:bookworm}}
suite=${DEBIAN_SUITE:-bookworm}

log() { printf '%s\n' "$*" >&2; }

if podman image exists "$image"; then
    printf 'BASE_IMAGE=%s\n' "$image"
    exit 0
fi

# The machine's own Debian mirror (deb822 sources or the classic sources.list).
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/base-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror" >&2
# Keep the image small and free of the host's apt lists; apt in a derived image runs `apt-get update`.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$image" >&2
printf 'BASE_IMAGE=%s\n' "$image"
