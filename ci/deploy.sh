#!/usr/bin/env bash
# Deploy jobs of the pipeline (thin jobs call this). Usage: ci/deploy.sh ACTION
#   review      helm upgrade --install the demo image (CPU, baked demo weights) into a per-MR namespace
#   stop-review helm uninstall the review release and delete its namespace (environment on_stop)
#   staging     helm upgrade --install --atomic --wait the commit's image on the staging cluster
#   canary      production: the commit's image as canary of every model in $MODELS, CANARY_PERCENT (10) %
#               (KServe Standard mode: the production values need kserve.gatewayApi.enabled and weights with a
#               storage URI, or the chart refuses the canary before anything reaches the cluster)
#   promote     production: the canary image becomes the stable image of every model, canary off (100 %)
#   rollback    production: canary live -> traffic 0 % then canary off; else helm rollback to the previous revision
# Environment (GitLab CI/CD variables):
#   KUBE_CONTEXT      GitLab agent context (kubectl config use-context), optional
#   RELEASE, NAMESPACE  Helm release and namespace
#   VALUES_FILES      space-separated values files of the environment (file-type CI variables)
#   IMAGE_REPOSITORY, IMAGE_TAG, IMAGE_DIGEST  the image to roll out (digest from the build job's dotenv)
#   CU13_DIGEST, CU12_DIGEST  digests of <tag>-cu13 / <tag>-cu12 (dotenv of build:cu13 / build:cu12): the
#                     chart pins cuda models with cuda.variants.<variant>.digest (staging, promote)
#   MODELS            space-separated model keys of the release (canary/promote/rollback)
#   HELM_TIMEOUT      default 20m (model loads are slow; the startup probe budget is 15 min)
#   DRY_RUN=1         print the helm/kubectl commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:?usage: ci/deploy.sh review|stop-review|staging|canary|promote|rollback}
chart=charts/vision-predictors
helm=${HELM:-helm}
kubectl=${KUBECTL:-kubectl}
timeout=${HELM_TIMEOUT:-20m}
release=${RELEASE:?RELEASE is not set}
namespace=${NAMESPACE:?NAMESPACE is not set}

run() {
    printf '+ %s\n' "$*" >&2
    if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

values_args=()
for file in ${VALUES_FILES:-}; do values_args+=(--values "$file"); done
image_args=(--set-string "image.repository=${IMAGE_REPOSITORY:?}" --set-string "image.tag=${IMAGE_TAG:?}")
if [ -n "${IMAGE_DIGEST:-}" ]; then image_args+=(--set-string "image.digest=$IMAGE_DIGEST"); fi
cuda_args=()
for variant in cu13 cu12; do
    digest_var="$(printf '%s' "$variant" | tr '[:lower:]' '[:upper:]')_DIGEST"
    if [ -n "${!digest_var:-}" ]; then cuda_args+=(--set-string "cuda.variants.$variant.digest=${!digest_var}"); fi
done

if [ -n "${KUBE_CONTEXT:-}" ]; then run "$kubectl" config use-context "$KUBE_CONTEXT"; fi

upgrade() {  # helm upgrade --install with rollback on failure (--atomic) and readiness wait
    run "$helm" upgrade --install "$release" "$chart" --namespace "$namespace" --create-namespace \
        --atomic --wait --timeout "$timeout" --history-max 10 "$@"
}

canary_enabled() {  # any model of the release with canary.enabled=true?
    "$helm" get values "$release" --namespace "$namespace" --output json \
        | python3 -c 'import json,sys; v=json.load(sys.stdin) or {}; sys.exit(0 if any(((m or {}).get("canary") or {}).get("enabled") for m in (v.get("models") or {}).values()) else 1)'
}

case $action in
    review)
        # The demo image carries its weights: no storage needed in review namespaces.
        upgrade "${values_args[@]}" "${image_args[@]}" \
            --set mode=deployment \
            --set models.general-recognition.predictor=general-recognition \
            --set models.general-recognition.weights.path=/opt/demo-models/general-recognition
        ;;
    stop-review)
        run "$helm" uninstall "$release" --namespace "$namespace" --wait --ignore-not-found
        run "$kubectl" delete namespace "$namespace" --ignore-not-found --wait=false
        ;;
    staging)
        upgrade "${values_args[@]}" "${image_args[@]}" "${cuda_args[@]}"
        ;;
    canary)
        percent=${CANARY_PERCENT:-10}
        args=()
        for model in ${MODELS:?MODELS is not set}; do
            args+=(--set "models.$model.canary.enabled=true" --set "models.$model.canary.trafficPercent=$percent"
                   --set-string "models.$model.canary.image.repository=$IMAGE_REPOSITORY"
                   --set-string "models.$model.canary.image.tag=$IMAGE_TAG")
            if [ -n "${IMAGE_DIGEST:-}" ]; then args+=(--set-string "models.$model.canary.image.digest=$IMAGE_DIGEST"); fi
        done
        upgrade --reuse-values "${values_args[@]}" "${args[@]}"
        ;;
    promote)
        args=()
        for model in ${MODELS:?MODELS is not set}; do
            args+=(--set "models.$model.canary.enabled=false" --set "models.$model.canary.trafficPercent=0"
                   --set-string "models.$model.image.repository=$IMAGE_REPOSITORY"
                   --set-string "models.$model.image.tag=$IMAGE_TAG")
            if [ -n "${IMAGE_DIGEST:-}" ]; then args+=(--set-string "models.$model.image.digest=$IMAGE_DIGEST"); fi
        done
        upgrade --reuse-values "${values_args[@]}" "${args[@]}" "${cuda_args[@]}"
        ;;
    rollback)
        if [ "${DRY_RUN:-0}" = 1 ] || canary_enabled; then
            zero=() off=()
            for model in ${MODELS:?MODELS is not set}; do
                zero+=(--set "models.$model.canary.trafficPercent=0")
                off+=(--set "models.$model.canary.enabled=false")
            done
            upgrade --reuse-values "${zero[@]}"   # instant: all traffic back on the stable revision
            upgrade --reuse-values "${off[@]}"    # then remove the canary pods
        else
            run "$helm" rollback "$release" 0 --namespace "$namespace" --wait --timeout "$timeout"
        fi
        ;;
    *)
        printf 'unknown action %s\n' "$action" >&2
        exit 2
        ;;
esac
