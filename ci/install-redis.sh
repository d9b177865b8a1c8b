#!/usr/bin/env bash
# Idempotently install Debian's redis-server (the asynchronous-jobs tests start their own on a free
# loopback port in a temporary directory; nothing here starts one). Prints the binary's path.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "redis-server is missing and installing it needs root: apt-get install -y redis-server" >&2
    exit 1
  fi
  # One installer at a time (apt's lock would fail a second one).
  exec 9>/tmp/.predictors-install-redis.lock
  flock 9
  if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
  fi
fi
command -v redis-server
