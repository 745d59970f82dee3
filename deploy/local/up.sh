#!/usr/bin/env bash
# Starts a local cluster: MariaDB and Redis ensured, migrations run, two chat nodes on
# 8081 and 8082, and nginx on 8080 in front of them, like a load balancer in production.
# Everything runs in the background; deploy/local/down.sh stops it. Logs: .run/*.log
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}
run="$root/.run"

deploy/local/ensure-services.sh --nginx
deploy/local/down.sh >/dev/null 2>&1 || true
mkdir -p "$run"

echo "== building chat-node (release)"
cargo build --release --locked -p chat-node
bin="$CARGO_TARGET_DIR/release/chat-node"

# One session key for every node of the cluster, kept across restarts.
if [ -z "${CHAT_SESSION_KEY:-}" ]; then
  [ -s "$run/session-key" ] || head -c 48 /dev/urandom | base64 | tr -d '\n' > "$run/session-key"
  CHAT_SESSION_KEY=$(cat "$run/session-key")
fi
export CHAT_SESSION_KEY
# Plain HTTP: development mode leaves Secure off the session cookie.
export CHAT_DEV=${CHAT_DEV:-true}
export DATABASE_URL=${DATABASE_URL:-mysql://root@127.0.0.1:3306/chat}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export CHAT_REDIS_PREFIX=${CHAT_REDIS_PREFIX:-chat}
export CHAT_ALLOWED_ORIGINS=${CHAT_ALLOWED_ORIGINS:-http://localhost:8080,http://127.0.0.1:8080}
# nginx on this machine: the nodes believe its X-Forwarded-For and X-Forwarded-Proto.
export CHAT_TRUSTED_PROXIES=${CHAT_TRUSTED_PROXIES:-127.0.0.1}

echo "== migrating $DATABASE_URL"
"$bin" migrate

for n in 1 2; do
  port=$((8080 + n))
  CHAT_LISTEN="127.0.0.1:$port" CHAT_METRICS_LISTEN="127.0.0.1:$((9090 + n))" CHAT_NODE_ID="local-$n" \
    nohup "$bin" >"$run/node$n.log" 2>&1 </dev/null &
  echo $! >"$run/node$n.pid"
done

ready() { curl -fs -o /dev/null "$1"; }
for port in 8081 8082; do
  for _ in $(seq 1 150); do ready "http://127.0.0.1:$port/readyz" && break; sleep 0.2; done
  ready "http://127.0.0.1:$port/readyz" || { echo "node on $port is not ready; see $run/" >&2; exit 1; }
done

mkdir -p "$run/nginx"
chmod 755 "$run" "$run/nginx"
sed -e "s#__RUNDIR__#$run/nginx#g" -e "s#__LISTEN__#127.0.0.1:8080#" \
    -e "s#__NODE_A__#127.0.0.1:8081#" -e "s#__NODE_B__#127.0.0.1:8082#" \
    deploy/local/nginx.conf.template >"$run/nginx/nginx.conf"
/usr/sbin/nginx -c "$run/nginx/nginx.conf" -p "$run/nginx/"
for _ in $(seq 1 50); do ready "http://127.0.0.1:8080/readyz" && break; sleep 0.2; done
ready "http://127.0.0.1:8080/readyz" || { echo "nginx is not answering; see $run/nginx/error.log" >&2; exit 1; }

cat <<MSG

Local chat cluster is up:
  open    http://localhost:8080   (nginx, load-balancing the two nodes)
  node 1  http://127.0.0.1:8081
  node 2  http://127.0.0.1:8082
  metrics http://127.0.0.1:9091/metrics http://127.0.0.1:9092/metrics
  logs    $run/node1.log $run/node2.log
  stop    deploy/local/down.sh
MSG
