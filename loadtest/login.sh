#!/usr/bin/env bash
# Logins at the production bcrypt cost: how many a two-node cluster sustains, at what
# latency, and when it starts answering 503 + Retry-After.
#
#   loadtest/login.sh                    # 200 users started 2/s, 120 s, cost 12
#   USERS=400 RATE=4 PAUSE_MS=500 loadtest/login.sh
#
# Starts two fresh release nodes (fresh database and Redis prefix, random session key,
# CHAT_DEV=true, CHAT_BCRYPT_COST=$COST, default 12) and runs the `login` scenario: each
# user registers and logs in once, then logs in again after every pause. Users start at
# RATE per second, so the offered rate climbs until the nodes' bcrypt work saturates.
# Prints the generator's `login:` line and its per-10 s table (ok/s, 503+Retry-After/s,
# latency), from which the sustained rate and the knee are read.
# Env: USERS (200), RATE (2), RUN_TIME (120s, after the last user started), PAUSE_MS
# (1000, or <min>-<max>), COST (12), PORTS (9301,9302; /metrics 10 higher), CHAT_NODE_BIN,
# OUT,
# CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
USERS="${USERS:-200}"
RATE="${RATE:-2}"
RUN_TIME="${RUN_TIME:-120s}"
PAUSE_MS="${PAUSE_MS:-1000}"
COST="${COST:-12}"
IFS=', ' read -r -a PORTS <<<"${PORTS:-9301,9302}"

source loadtest/cluster.sh
cluster_init login

cluster_binaries
LT="$LOADTEST_BIN"

HOSTS=""
for port in "${PORTS[@]}"; do HOSTS+="${HOSTS:+,}http://127.0.0.1:$port"; done
echo "db $DB, redis prefix $PREFIX_REDIS, bcrypt cost $COST, results in $OUT"
i=0
for port in "${PORTS[@]}"; do
  i=$(( i + 1 ))
  start_node "$port" "login-$i" "$COST"
done

LOADTEST_HOSTS="$HOSTS" LOADTEST_RUN="l$TAG" LOADTEST_LOGIN_PAUSE_MS="$PAUSE_MS" \
  "$LT" --host "http://127.0.0.1:${PORTS[0]}" \
    --scenarios login --users "$USERS" --increase-rate "$RATE" --run-time "$RUN_TIME" \
    --report-file "$OUT/report.json" >"$OUT/loadtest.txt" 2>&1 || echo "loadtest exit $?" >&2

echo
echo "== login: $USERS users started at $RATE/s, pause $PAUSE_MS ms, bcrypt cost $COST, ${#PORTS[@]} nodes, $(nproc) cores"
sed -n '/^=== login ===/,/^$/p' "$OUT/loadtest.txt" | sed '1d'
