#!/usr/bin/env bash
# Full offline check of charts/vision-predictors and manifests/ (there is no cluster):
#   1. helm lint --strict with Helm 3 and Helm 4, default values and every ci/*-values.yaml
#   2. helm template of each (Helm 3 and Helm 4 renders must be identical)
#   3. pytest tests/chart: kubernetes-validate --strict of every built-in object, the KServe CRD
#      schema (../shared/schemas/kserve, made strict) for every InferenceService of the chart and of
#      manifests/, and the semantic assertions (probes, env, selectors, GPU, canary, ...)
#   4. checkov on the deployment-mode rendering (same pod spec as the InferenceService predictor),
#      skipping only the checks listed as `# checkov:skip=ID: reason` in values.yaml
# Exits non-zero if any step fails. Tools are installed into .tools/ on first use.
# PYTHON: interpreter with pytest, pyyaml, jsonschema, kubernetes-validate and the project
# (default .venv/bin/python, else python3).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
chart=$repo/charts/vision-predictors
out=$repo/.tools/rendered
cd "$repo" || exit 1

start=$SECONDS
failures=()
fail() { failures+=("$1"); printf 'FAIL: %s\n' "$1"; }
step() { printf '\n== %s\n' "$*"; }

step "tools"
eval "$(ci/install-helm.sh)" || { echo "ci/install-helm.sh failed"; exit 1; }
eval "$(ci/install-checkov.sh)" || { echo "ci/install-checkov.sh failed"; exit 1; }
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON=$repo/.venv/bin/python; else PYTHON=python3; fi
fi
"$HELM3" version --short; "$HELM4" version --short; "$CHECKOV" --version
"$PYTHON" -c 'import pytest, yaml, jsonschema, kubernetes_validate' \
    || { echo "$PYTHON lacks pytest/pyyaml/jsonschema/kubernetes-validate (the project's test extra)"; exit 1; }

step "helm lint --strict and helm template (Helm 3 and Helm 4)"
rm -rf "$out" && mkdir -p "$out"
scenarios=(default)
for f in "$chart"/ci/*-values.yaml; do scenarios+=("$(basename "$f" .yaml)"); done
lints=0
for s in "${scenarios[@]}"; do
    args=()
    [ "$s" = default ] || args=(-f "$chart/ci/$s.yaml")
    for h in helm3 helm4; do
        bin=HELM${h#helm}
        if "${!bin}" lint --strict "$chart" "${args[@]}" >"$out/$h-$s.lint" 2>&1; then
            lints=$((lints + 1))
        else
            cat "$out/$h-$s.lint"; fail "$h lint --strict $s"
        fi
        "${!bin}" template vp "$chart" --namespace models "${args[@]}" >"$out/$h-$s.yaml" 2>"$out/$h-$s.err" \
            || { cat "$out/$h-$s.err"; fail "$h template $s"; }
    done
    cmp -s "$out/helm3-$s.yaml" "$out/helm4-$s.yaml" || fail "Helm 3 and Helm 4 render $s differently"
    printf '%-28s %4d objects\n' "$s" "$(grep -c '^kind:' "$out/helm4-$s.yaml")"
done
echo "lint --strict passed: $lints of $(( ${#scenarios[@]} * 2 ))"

step "pytest tests/chart (strict validation + semantics)"
"$PYTHON" -m pytest tests/chart -q -p no:cacheprovider || fail "pytest tests/chart"

step "checkov (deployment mode: ci/deployment-values.yaml)"
skips=$(sed -n 's/^# checkov:skip=\(CKV[A-Z0-9_]*\):.*/\1/p' "$chart/values.yaml" | paste -sd, -)
echo "skipped (justified in values.yaml): ${skips:-none}"
"$CHECKOV" --framework kubernetes --skip-download --quiet --compact \
    ${skips:+--skip-check "$skips"} -f "$out/helm4-deployment-values.yaml" \
    || fail "checkov"

step "summary ($((SECONDS - start)) s)"
if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failures[@]}"
    exit 1
fi
echo "all chart checks passed"
