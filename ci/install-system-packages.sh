#!/usr/bin/env bash
# Idempotently install the Debian packages the tests use: redis-server (the asynchronous-jobs tests start
# their own on a free loopback port in a temporary directory; nothing here starts one) and libjemalloc2
# (the server's memory allocator, predictors/allocator.py, as in the container). Prints redis-server's path.
set -euo pipefail
missing() {
  local packages=()
  command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
  /sbin/ldconfig -p 2>/dev/null | grep -q 'libjemalloc\.so\.2 ' || packages+=(libjemalloc2)
  echo "${packages[@]}"
}
if [[ -n $(missing) ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing: $(missing); installing needs root: apt-get install -y $(missing)" >&2
    exit 1
  fi
  # One installer at a time (apt's lock would fail a second one).
  exec 9>/tmp/.predictors-install-system-packages.lock
  flock 9
  wanted=$(missing)
  if [[ -n $wanted ]]; then
    apt-get update -qq >&2
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $wanted >&2
  fi
fi
command -v redis-server
