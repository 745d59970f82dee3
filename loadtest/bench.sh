#!/usr/bin/env bash
# Starts a two-node cluster on 127.0.0.1:9181/9182 with its own database and Redis
# prefix, runs the goose load test once per user count, keeps each node's /metrics and a
# `top` sample from mid-run, then stops the nodes and drops the database and Redis keys.
#
#   loadtest/bench.sh 50 200 500        # results in $OUT (default /tmp/chat-bench-<tag>)
#
# Env: RUN_TIME (default 60s), SCENARIOS (default: all), PORT_A/PORT_B (9181/9182; each
# node's /metrics listens 10 ports higher),
# LOADTEST_CHAT_WAIT_MS (chat pace, default 250-750), OUT,
# CARGO_TARGET_DIR (default ~/.cache/chat-target). Needs MariaDB and Redis on localhost.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
RUN_TIME="${RUN_TIME:-60s}"
PORT_A="${PORT_A:-9181}"
PORT_B="${PORT_B:-9182}"
TAG="$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
OUT="${OUT:-/tmp/chat-bench-$TAG}"
KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" # 64 hex characters
mkdir -p "$OUT"

cargo build --release -p chat-node
cargo build --release -p loadtest

PIDS=()
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_nodes
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`chat_bench_$TAG\`" || true
  redis-cli --scan --pattern "bench_$TAG:*" | xargs -r redis-cli del >/dev/null || true
}
trap cleanup EXIT

# Every simulated user registers and logs in from 127.0.0.1: lift the per-address limits.
start_node() { # port id
  CHAT_LISTEN="127.0.0.1:$1" \
  CHAT_METRICS_LISTEN="127.0.0.1:$(($1 + 10))" \
  DATABASE_URL="mysql://root@127.0.0.1:3306/chat_bench_$TAG" \
  REDIS_URL="redis://127.0.0.1:6379" \
  CHAT_REDIS_PREFIX="bench_$TAG" \
  CHAT_SESSION_KEY="$KEY" \
  CHAT_BCRYPT_COST=4 \
  CHAT_REGISTER_MAX_PER_ADDRESS=1000000 \
  CHAT_LOGIN_MAX_FAILURES_PER_ADDRESS=1000000 \
  CHAT_NODE_ID="$2" \
  RUST_LOG=warn \
    "$CARGO_TARGET_DIR/release/chat-node" >"$OUT/$2.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "node $2 not ready" >&2
  return 1
}

echo "db chat_bench_$TAG, prefix bench_$TAG, results in $OUT"

# Fresh nodes per run, so each run's /metrics counts that run only.
for users in "${@:-50}"; do
  start_node "$PORT_A" bench-1
  start_node "$PORT_B" bench-2
  rate=$(( users / 10 > 5 ? users / 10 : 5 ))
  # The second of two samples 3 s apart: the first one averages since boot.
  ( sleep 40; top -b -n2 -d 3 -w 200 | awk '/^top -/{n++} n==2' | head -16 >"$OUT/top-$users.txt" ) &
  top_pid=$!
  LOADTEST_HOSTS="http://127.0.0.1:$PORT_A,http://127.0.0.1:$PORT_B" \
  LOADTEST_RUN="${TAG}u$users" \
    "$CARGO_TARGET_DIR/release/loadtest" \
      --host "http://127.0.0.1:$PORT_A" \
      --users "$users" --increase-rate "$rate" --run-time "$RUN_TIME" \
      ${SCENARIOS:+--scenarios "$SCENARIOS"} \
      --report-file "$OUT/report-$users.json" \
      >"$OUT/loadtest-$users.txt" 2>&1 || echo "loadtest exit $?" >&2
  wait "$top_pid" || true
  curl -fs "http://127.0.0.1:$((PORT_A + 10))/metrics" >"$OUT/metrics-a-$users.txt"
  curl -fs "http://127.0.0.1:$((PORT_B + 10))/metrics" >"$OUT/metrics-b-$users.txt"
  stop_nodes
  echo "done: $users users"
done
