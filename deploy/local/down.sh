#!/usr/bin/env bash
# Stops what deploy/local/up.sh started. Nodes get SIGTERM and drain.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
run="$(pwd)/.run"
if [ -f "$run/nginx/nginx.pid" ]; then
  /usr/sbin/nginx -c "$run/nginx/nginx.conf" -p "$run/nginx/" -s quit 2>/dev/null || true
fi
for n in 1 2; do
  if [ -f "$run/node$n.pid" ]; then
    kill -TERM "$(cat "$run/node$n.pid")" 2>/dev/null || true
    rm -f "$run/node$n.pid"
  fi
done
echo "stopped"
