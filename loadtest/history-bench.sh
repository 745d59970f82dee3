#!/usr/bin/env bash
# `sync` and `chatHistory` latency on one conversation of MESSAGES messages (default
# 1,000,000), for each chat-node binary given, one after the other on the same machine:
#
#   loadtest/history-bench.sh                                   # this tree's release build
#   loadtest/history-bench.sh OLD_BIN NEW_BIN                   # A/B, same seed, same probe
#
# Each binary gets a fresh database: one node on 127.0.0.1:$PORT, two users registered
# through HTTP, MESSAGES rows written straight into MySQL with the sequence engine, then
# `history_probe` times REQUESTS rounds of four requests on one socket (see its source).
# Between the seed and the probe it waits (at most SETTLE_MAX s) until InnoDB has written
# the seed's dirty pages out.
# Env: MESSAGES (1000000), REQUESTS (200), PORT (9191), SETTLE_MAX (120). Needs MariaDB and
# Redis locally.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
MESSAGES="${MESSAGES:-1000000}"
REQUESTS="${REQUESTS:-200}"
PORT="${PORT:-9191}"
SETTLE_MAX="${SETTLE_MAX:-120}"
KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"

cargo build --release -p loadtest --bin history_probe
if [ "$#" -eq 0 ]; then
  cargo build --release -p chat-node
  set -- "$CARGO_TARGET_DIR/release/chat-node"
fi

NODE=""
DB=""
PREFIX=""
cleanup() {
  [ -n "$NODE" ] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null || true
  [ -n "$DB" ] && mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$DB\`" || true
  [ -n "$PREFIX" ] && { redis-cli --scan --pattern "$PREFIX:*" | xargs -r redis-cli del >/dev/null; } || true
  NODE="" DB="" PREFIX=""
}
trap cleanup EXIT

sql() { mariadb -uroot -h127.0.0.1 -N "$DB" -e "$1"; }

for bin in "$@"; do
  tag="$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
  DB="chat_hist_$tag"
  PREFIX="hist_$tag"
  echo "== $bin ($(sha1sum "$bin" | cut -c1-12)), database $DB"
  CHAT_LISTEN="127.0.0.1:$PORT" DATABASE_URL="mysql://root@127.0.0.1:3306/$DB" \
  CHAT_REDIS_PREFIX="$PREFIX" CHAT_SESSION_KEY="$KEY" CHAT_BCRYPT_COST=4 CHAT_DEV=true \
  CHAT_WS_RATE=100000 CHAT_WS_BURST=100000 \
  CHAT_WS_HISTORY_RATE=100000 CHAT_WS_HISTORY_BURST=100000 CHAT_METRICS_LISTEN=127.0.0.1:0 RUST_LOG=warn \
    "$bin" >"/tmp/$DB.log" 2>&1 &
  NODE=$!
  for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  jar="$(mktemp)"
  for u in alice bob; do
    curl -fs -o /dev/null -H 'Content-Type: application/json' \
      -d "{\"username\":\"$u\",\"password\":\"password123\"}" "http://127.0.0.1:$PORT/api/register"
  done
  curl -fs -o /dev/null -c "$jar" -H 'Content-Type: application/json' \
    -d '{"username":"alice","password":"password123"}' "http://127.0.0.1:$PORT/api/login"
  cookie="$(awk '$6 == "chat_session" { print $6 "=" $7 }' "$jar")"
  rm -f "$jar"

  # Alternating senders, one microsecond apart; the recipient column exists from the
  # sync-index migration on, so the seed fills it when it is there.
  started=$(date +%s)
  sql "INSERT INTO channels (user_low, user_high) VALUES (1, 2)"
  if [ -n "$(sql "SHOW COLUMNS FROM messages LIKE 'recipient_id'")" ]; then
    cols="channel_id, sender_id, recipient_id, client_id, body, sent_at"
    vals="1, 1 + seq % 2, 2 - seq % 2, NULL, CONCAT('message ', seq), NOW(6) - INTERVAL ($MESSAGES - seq) MICROSECOND"
  else
    cols="channel_id, sender_id, client_id, body, sent_at"
    vals="1, 1 + seq % 2, NULL, CONCAT('message ', seq), NOW(6) - INTERVAL ($MESSAGES - seq) MICROSECOND"
  fi
  sql "INSERT INTO messages ($cols) SELECT $vals FROM seq_1_to_$MESSAGES; ANALYZE TABLE messages" >/dev/null
  newest="$(sql "SELECT MAX(id) FROM messages")"
  echo "seeded $MESSAGES messages in $(( $(date +%s) - started )) s, newest id $newest"
  # InnoDB writes the seed's dirty pages out in the background for a while after; a
  # probe started meanwhile measures that flushing, not the queries.
  settled=$(date +%s)
  while [ "$(( $(date +%s) - settled ))" -lt "$SETTLE_MAX" ]; do
    dirty="$(mariadb -uroot -h127.0.0.1 -N -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{ print $2 }')"
    [ "$dirty" -lt 100 ] && break
    sleep 1
  done
  echo "settled in $(( $(date +%s) - settled )) s (dirty pages: $dirty)"

  "$CARGO_TARGET_DIR/release/history_probe" "ws://127.0.0.1:$PORT/ws" "$cookie" bob "$newest" "$REQUESTS"
  cleanup
done
