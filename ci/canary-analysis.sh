#!/usr/bin/env bash
# The pipeline's canary gate (job canary:analysis): `predictors canary-analysis` on the production Prometheus,
# again every CANARY_ANALYSIS_INTERVAL_SECONDS while it cannot decide, until CANARY_ANALYSIS_DEADLINE_SECONDS.
#   exit 0  the canary is as good as stable: canary:promote runs (when: on_success)
#   exit 1  the canary is worse (a check failed), or still undecided at the deadline: canary:rollback runs
#           (when: on_failure). The manual promote / rollback jobs stay as overrides.
# The report of the last attempt is in canary-analysis/ (report.md, report.json; job artefacts).
# Environment (GitLab CI/CD variables; NAMESPACE, RELEASE, MODELS, VALUES_FILES as for ci/deploy.sh):
#   CANARY_PROMETHEUS_URL              Prometheus that scrapes the release (the chart's PodMonitor labels)
#   CANARY_ANALYSIS_MODELS             API model names to judge (default: MODELS, the chart's model keys)
#   CANARY_ANALYSIS_DEADLINE_SECONDS   default 1800
#   CANARY_ANALYSIS_INTERVAL_SECONDS   default 60
#   CANARY_ANALYSIS_ARGS               extra flags, e.g. "--window 30m --min-requests 500"
#   PREDICTORS                         the CLI (default: predictors, as in the server image)
# Thresholds: the canaryAnalysis block of VALUES_FILES, then CANARY_ANALYSIS_ARGS (docs/release-safety.md).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

predictors=${PREDICTORS:-predictors}
url=${CANARY_PROMETHEUS_URL:?CANARY_PROMETHEUS_URL is not set}
models=${CANARY_ANALYSIS_MODELS:-${MODELS:?MODELS is not set}}
deadline_seconds=${CANARY_ANALYSIS_DEADLINE_SECONDS:-1800}
interval=${CANARY_ANALYSIS_INTERVAL_SECONDS:-60}
out=${CANARY_ANALYSIS_DIR:-canary-analysis}

args=(canary-analysis --prometheus "$url"
      --selector "namespace=\"${NAMESPACE:?NAMESPACE is not set}\",app_kubernetes_io_instance=\"${RELEASE:?RELEASE is not set}\""
      --json "$out/report.json" --markdown "$out/report.md")
for model in $models; do args+=(--model "$model"); done
for file in ${VALUES_FILES:-}; do args+=(--values "$file"); done
# shellcheck disable=SC2206 # word splitting of the extra flags is intended
args+=(${CANARY_ANALYSIS_ARGS:-})

deadline=$(( $(date +%s) + deadline_seconds ))
attempt=0
while :; do
    attempt=$((attempt + 1))
    printf 'canary analysis, attempt %d\n' "$attempt"
    "$predictors" "${args[@]}"
    code=$?
    case $code in
        0) printf 'verdict: promote\n'; exit 0 ;;
        1) printf 'verdict: roll back\n'; exit 1 ;;
    esac
    if (( $(date +%s) + interval > deadline )); then
        printf 'verdict: roll back (still undecided at the deadline, %d s after the first attempt)\n' \
            "$deadline_seconds"
        printf 'undecided at the deadline: rolling back; run the manual promote job to promote anyway\n'
        exit 1
    fi
    sleep "$interval"
done
