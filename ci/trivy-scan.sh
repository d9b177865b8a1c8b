#!/usr/bin/env bash
# Trivy scans of the pipeline's `scan` stage (runs in the aquasec/trivy image; Trivy cannot run on our
# offline machines). Usage:
#   ci/trivy-scan.sh image IMAGE   vulnerabilities: fails on HIGH/CRITICAL with a fix available;
#                                  writes gl-container-scanning-report.json (GitLab container_scanning)
#   ci/trivy-scan.sh config        misconfigurations of Dockerfile, chart (rendered with its CI values)
#                                  and manifests/: fails on HIGH/CRITICAL; writes gl-codequality-trivy.json
# Reports go to $REPORT_DIR (default .). Accepted findings live in the IGNORES list below, each with
# its reason (Trivy reads them from a generated .trivyignore).
set -euo pipefail
cd "$(dirname "$0")/.."

report_dir=${REPORT_DIR:-.}
mkdir -p "$report_dir"
trivy=${TRIVY:-trivy}
ignorefile=$(mktemp)
trap 'rm -f "$ignorefile"' EXIT
cat >"$ignorefile" <<'IGNORES'
# AVD-KSV-0020 / AVD-KSV-0021 (runAsUser/runAsGroup > 10000): UID/GID 1001 is the image contract;
# runAsNonRoot, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault and a
# read-only root filesystem contain it (same reasoning as checkov CKV_K8S_40 in the chart's values.yaml).
AVD-KSV-0020
AVD-KSV-0021
IGNORES

# shellcheck disable=SC2054  # the comma belongs to the --severity value
common=(--exit-code 1 --severity HIGH,CRITICAL --ignorefile "$ignorefile" --no-progress)
case ${1:-} in
    image)
        image=${2:?usage: ci/trivy-scan.sh image IMAGE}
        "$trivy" image "${common[@]}" --ignore-unfixed --scanners vuln \
            --format template --template "@/contrib/gitlab.tpl" \
            --output "$report_dir/gl-container-scanning-report.json" "$image" || status=$?
        # Human-readable table in the job log (same findings).
        "$trivy" image --severity HIGH,CRITICAL --ignore-unfixed --scanners vuln --no-progress \
            --ignorefile "$ignorefile" --skip-db-update "$image"
        exit "${status:-0}"
        ;;
    config)
        status=0
        for target in Dockerfile manifests; do
            "$trivy" config "${common[@]}" "$target" || status=1
        done
        for values in charts/vision-predictors/ci/*-values.yaml; do
            "$trivy" config "${common[@]}" --helm-values "$values" charts/vision-predictors || status=1
        done
        "$trivy" config --severity HIGH,CRITICAL --ignorefile "$ignorefile" --no-progress \
            --format template --template "@/contrib/gitlab-codequality.tpl" \
            --output "$report_dir/gl-codequality-trivy.json" .
        exit "$status"
        ;;
    *)
        printf 'usage: ci/trivy-scan.sh image IMAGE | config\n' >&2
        exit 2
        ;;
esac
