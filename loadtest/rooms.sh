#!/usr/bin/env bash
# Room fan-out on a two-node cluster: rooms of SIZE members spread over both nodes, a few
# senders per room; how many deliveries a second, and how long from a send to the last
# member's socket.
#
#   loadtest/rooms.sh                          # 1000 users in rooms of 10
#   SIZE=1000 USERS=1000 SENDERS=5 loadtest/rooms.sh
#
# Starts two fresh release nodes (fresh database and Redis prefix, bcrypt cost 4) and runs
# the `rooms` scenario: user n (on node n % 2) is in room n / SIZE, which its first user
# creates once every member registered; the first SENDERS of each room send a message
# every INTERVAL_MS. Prints the generator's `=== rooms ===` lines, each figure twice: over
# the whole run after the users started (RUN_TIME, the ramp-up included), and over the
# messages sent after the last member learned its room.
# Env: USERS (1000), SIZE (10), SENDERS (1), INTERVAL_MS (1000), RATE (100 users/s),
# RUN_TIME (60s), PORTS (9401,9402; /metrics 10 higher), CHAT_NODE_BIN, LOADTEST_BIN, OUT,
# CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
USERS="${USERS:-1000}"
SIZE="${SIZE:-10}"
SENDERS="${SENDERS:-1}"
INTERVAL_MS="${INTERVAL_MS:-1000}"
RATE="${RATE:-100}"
RUN_TIME="${RUN_TIME:-60s}"
IFS=', ' read -r -a PORTS <<<"${PORTS:-9401,9402}"

source loadtest/cluster.sh
cluster_init rooms

cluster_binaries

HOSTS=""
for port in "${PORTS[@]}"; do HOSTS+="${HOSTS:+,}http://127.0.0.1:$port"; done
echo "db $DB, redis prefix $PREFIX_REDIS, results in $OUT"
i=0
for port in "${PORTS[@]}"; do
  i=$(( i + 1 ))
  start_node "$port" "rooms-$i" 4
done

LOADTEST_HOSTS="$HOSTS" LOADTEST_RUN="r$TAG" LOADTEST_ROOM_SIZE="$SIZE" \
  LOADTEST_ROOM_SENDERS="$SENDERS" LOADTEST_ROOM_INTERVAL_MS="$INTERVAL_MS" \
  "$LOADTEST_BIN" --host "http://127.0.0.1:${PORTS[0]}" \
    --scenarios rooms --users "$USERS" --increase-rate "$RATE" --run-time "$RUN_TIME" \
    --report-file "$OUT/report.json" >"$OUT/loadtest.txt" 2>&1 || echo "loadtest exit $?" >&2

echo
echo "== rooms: $USERS users in rooms of $SIZE, $SENDERS sender(s) per room every $INTERVAL_MS ms, ${#PORTS[@]} nodes, $(nproc) cores"
sed -n '/^=== rooms ===/,/^$/p' "$OUT/loadtest.txt" | sed '1d'
