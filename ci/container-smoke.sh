#!/usr/bin/env bash
# Container smoke test, kubelet-faithful, with podman (no Docker daemon, no registry needed):
#   1. install podman/runc/debootstrap (idempotent), make the local Debian base image;
#   2. build the image's `demo` target (runtime stage + baked demo weights) from that base;
#   3. render the chart (deployment mode, tests/pipeline/smoke-values.yaml) and run the predictor
#      container exactly as the rendered pod spec says (python -m ci.smoke_client pod): args, env, ports,
#      user, read-only root, emptyDir /tmp, the PVC at /mnt/models (demo weights copied out of the
#      image), limits; poll the startup/readiness/liveness probes like the kubelet; v1/v2/tritonclient
#      checks; preStop + SIGTERM during a burst of requests, every accepted request answered in the grace;
#   4. the same for the pod KServe would run: the chart in KServe Standard mode
#      (tests/pipeline/smoke-kserve-values.yaml) through KServe's own reconciler and pod mutator
#      (tests/kserve via tests/chart/kserve_harness.py): its Deployment's args, env, ports, probes,
#      security context and volumes as KServe sets them.
# Exits non-zero on any failure; removes its container and temp dirs (not the cached images/layers).
#
# Environment: SMOKE_IMAGE (default localhost/vision-predictors:smoke), BASE_IMAGE (default: the local
# debootstrap image), SMOKE_SKIP_BUILD=1 (use an existing SMOKE_IMAGE), WHEEL_DIRS / TORCH_INDEX_URL /
# PIP_EXTRA_INDEX_URL (see ci/build-image.sh; default: this machine's local wheel indexes when present).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf '[container-smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
start=$SECONDS

image=${SMOKE_IMAGE:-localhost/vision-predictors:smoke}
name=vision-predictors-smoke-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/container-smoke.XXXXXX")
podman_global=(--runtime=runc --cgroup-manager=cgroupfs)
cleanup() {
    podman "${podman_global[@]}" rm --force --time 0 --ignore "$name" "$name-weights" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$(ci/install-podman.sh)"
eval "$(ci/install-helm.sh)"
ci/setup-python.sh --test >&2
python=$repo/.venv/bin/python

if [ "${SMOKE_SKIP_BUILD:-0}" != 1 ]; then
    eval "$(ci/make-base-image.sh)"
    # This machine keeps torch and many wheels on disk as file:// indexes: use them when present.
    if [ -z "${WHEEL_DIRS+x}" ]; then
        WHEEL_DIRS=""
        for dir in /opt/pypi-more /opt/pypi; do [ -d "$dir/simple" ] && WHEEL_DIRS+="$dir "; done
        if [ -d /opt/pypi-more/simple/torch ]; then
            : "${TORCH_INDEX_URL:=file:///opt/pypi-more/simple}"
        fi
        if [ -d /opt/pypi/simple ]; then
            : "${PIP_EXTRA_INDEX_URL:=file:///opt/pypi/simple}"
        fi
    fi
    export WHEEL_DIRS BASE_IMAGE TORCH_INDEX_URL="${TORCH_INDEX_URL:-}" PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL:-}"
    build_start=$SECONDS
    ci/build-image.sh "$image" demo >"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log" >&2; exit 1; }
    log "image $image built in $((SECONDS - build_start)) s"
fi
podman image exists "$image" || { log "no image $image"; exit 1; }

# Render the chart for this image (the exact pod spec a cluster would get).
repository=${image%:*} tag=${image##*:}
"$HELM4" template smoke charts/vision-predictors --namespace smoke -f tests/pipeline/smoke-values.yaml \
    --set image.repository="$repository" --set image.tag="$tag" >"$work/rendered.yaml"

# The PVC's content: the demo weights, copied out of the image (the container then gets them read-only
# at /mnt/models through the claim's subPath, as a real PVC would provide).
mkdir -p "$work/pvc"
podman "${podman_global[@]}" create --name "$name-weights" "$image" >/dev/null
podman "${podman_global[@]}" cp "$name-weights:/opt/demo-models/." "$work/pvc/"
podman "${podman_global[@]}" rm --force "$name-weights" >/dev/null
chmod -R a+rX "$work/pvc"
mkdir -p "$work/scratch"

"$python" -m ci.smoke_client pod --manifest "$work/rendered.yaml" --deployment smoke-general-recognition \
    --volume "smoke-models=$work/pvc" --scratch "$work/scratch" --name "$name" \
    --podman-global-args "${podman_global[*]}"
log "the chart's deployment-mode pod passed"

# The pod KServe would run: the same model in KServe Standard mode, through KServe's own reconciler and pod
# mutator (tests/kserve; Pod Security "restricted" checked on the result), then run as above.
"$python" -m tests.chart.kserve_harness --helm "$HELM4" --namespace smoke smoke charts/vision-predictors \
    -f tests/pipeline/smoke-kserve-values.yaml --set image.repository="$repository" --set image.tag="$tag" \
    >"$work/kserve-pods.yaml"
rm -rf "$work/scratch" && mkdir -p "$work/scratch"
"$python" -m ci.smoke_client pod --manifest "$work/kserve-pods.yaml" \
    --deployment smoke-general-recognition-predictor --container kserve-container \
    --volume "smoke-models=$work/pvc" --scratch "$work/scratch" --name "$name" \
    --podman-global-args "${podman_global[*]}"
log "KServe's reconciled pod passed"
log "passed in $((SECONDS - start)) s"
