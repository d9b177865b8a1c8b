#!/usr/bin/env bash
# Build the image with podman or buildah (no Docker daemon needed). Used by ci/container-smoke.sh here
# and by the pipeline's build job (buildah in GitLab). Usage:
#   ci/build-image.sh IMAGE:TAG [TARGET] [extra `build` args...]
# Environment:
#   BUILDER            podman (default if present) or buildah
#   BASE_IMAGE         FROM image (default: the Dockerfile's)
#   TORCH_INDEX_URL    index for torch/torchvision; WHEEL_DIRS: host dirs bind-mounted read-only at the
#                      same path during the build (local file:// indexes); PIP_EXTRA_INDEX_URL likewise.
#   CA_BUNDLE          host CA bundle mounted over the build's (TLS-intercepting proxies); default the
#                      Debian bundle when it exists.
#   WITH_OFA, DEMO_MODELS, VERSION, REVISION  passed through as build args when set.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:?usage: ci/build-image.sh IMAGE:TAG [TARGET] [build args...]}
target=${2:-runtime}
shift $(( $# >= 2 ? 2 : 1 ))

builder=${BUILDER:-$(command -v podman >/dev/null && echo podman || echo buildah)}
args=(build --format docker --layers --isolation=chroot --network=host --target "$target" --tag "$image")
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$ca" ]; then
    args+=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
fi
for dir in ${WHEEL_DIRS:-}; do
    [ -d "$dir" ] && args+=(--volume "$dir:$dir:ro")
done
for name in BASE_IMAGE TORCH_INDEX_URL PIP_EXTRA_INDEX_URL TORCH_VERSION TORCHVISION_VERSION WITH_OFA \
            DEMO_MODELS VERSION SOURCE; do
    if [ -n "${!name:-}" ]; then
        args+=(--build-arg "$name=${!name}")
    fi
done
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
args+=(--build-arg "REVISION=$revision" --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")

printf '%s %s\n' "$builder" "${args[*]} $* ." >&2
exec "$builder" "${args[@]}" "$@" .
