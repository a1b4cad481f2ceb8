#!/usr/bin/env bash
# Start nginx (foreground) on 127.0.0.1:PORT with one worker pinned to CPU 1.
# Usage: serve_nginx.sh [PORT] [PREFIX_DIR]   (defaults 18080, /tmp/servewise-bench-nginx)
# NGINX_SCHED="chrt -f 10" (or "nice -n -20") raises its priority on a shared, loaded machine (run.py does this).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${1:-18080}"
PREFIX="${2:-/tmp/servewise-bench-nginx}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
mkdir -p "$PREFIX"
sed -e "s#__PORT__#$PORT#g" -e "s#__PREFIX__#$PREFIX#g" "$HERE/nginx.conf" > "$PREFIX/nginx.conf"
exec ${NGINX_SCHED:-} taskset -c 1 "$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/error.log"
