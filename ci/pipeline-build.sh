#!/usr/bin/env bash
# Pipeline build job: build one image variant with buildah (daemonless, rootless-capable; kaniko is
# archived), push it to $CI_REGISTRY_IMAGE tagged with the commit SHA, and export its digest.
# Usage: ci/pipeline-build.sh IMAGE:TAG TARGET   (BASE_IMAGE, TORCH_INDEX_URL ... as in ci/build-image.sh)
# ALSO_TAG: optional second reference pushed from the same build (same digest), e.g. the plain <sha>.
# Writes build.env (dotenv report): <VARIANT>_DIGEST=sha256:... for the deploy jobs.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:?usage: ci/pipeline-build.sh IMAGE:TAG TARGET}
target=${2:-runtime}
variant=${VARIANT:-gpu}

if [ -n "${CI_REGISTRY:-}" ]; then
    printf '%s' "$CI_REGISTRY_PASSWORD" | buildah login --username "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"
fi
export BUILDER=buildah VERSION=${CI_COMMIT_TAG:-0.1.0+${CI_COMMIT_SHORT_SHA:-dev}} \
    SOURCE=${CI_PROJECT_URL:-https://gitlab.example.com/ml/vision-predictors} REVISION=${CI_COMMIT_SHA:-}
# Layer cache in the registry: the torch layer is GBs and rarely changes.
ci/build-image.sh "$image" "$target" --layers --cache-from "${CI_REGISTRY_IMAGE:-localhost/cache}/cache" \
    --cache-to "${CI_REGISTRY_IMAGE:-localhost/cache}/cache"
buildah push --digestfile image.digest "$image" "docker://$image"
if [ -n "${ALSO_TAG:-}" ]; then
    buildah push "$image" "docker://$ALSO_TAG"
fi
printf '%s_DIGEST=%s\n' "$(printf '%s' "$variant" | tr '[:lower:]' '[:upper:]')" "$(cat image.digest)" > build.env
cat build.env
