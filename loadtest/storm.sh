#!/usr/bin/env bash
# A reconnect storm: drain a node holding DRAIN sockets (SIGTERM) and time until every
# one of them is back on the other node and has synced, with nothing lost.
#
#   loadtest/storm.sh                          # 10,000 sockets drained into a node with 9,000
#   DRAIN=2000 STAY=2000 loadtest/storm.sh
#
# Starts two fresh release nodes A and B (as connections.sh: fresh database and Redis
# prefix, CHAT_DEV=true, bcrypt cost 4), seeds a directory of USERS users (default 20,000)
# with one conversation per pair of A's users, and runs the `connections` scenario in two
# generator processes: DRAIN sockets on A (users 1..DRAIN, each in one conversation with
# another of A's users) and STAY sockets on B. B's final count, DRAIN + STAY, must stay
# under the 20,000 open files a process may have here, hence 9,000 on B by default.
# Once all are open it writes MESSAGES messages into each of A's conversations straight
# into the database (not published: no socket sees them live, so each of A's clients
# must get its MESSAGES by `sync`), then sends A SIGTERM. A closes its sockets with 1012;
# each client waits 0-1 s (jitter), reconnects to B (a 503 from B's admission control is
# waited out as its Retry-After says, with jitter), `sync`s from the highest id it has
# seen and pages to the end. Prints: time from SIGTERM until B holds every socket, until
# the last client finished its sync walk, resync latency percentiles, 503s, and how many
# clients received exactly MESSAGES messages (fewer = lost).
# Env: DRAIN (10000), STAY (9000), USERS (20000), MESSAGES (3), PORTS (9341,9342; /metrics
# 10 higher), SOURCES (8), RATE (users started per second per generator, 1000),
# STORM_TIMEOUT (s, 180), NODE_ENV_EXTRA (space-separated VAR=value for both nodes, e.g.
# "CHAT_WS_ADMIT_RATE=500"), CHAT_NODE_BIN, OUT, CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
DRAIN="${DRAIN:-10000}"
STAY="${STAY:-9000}"
USERS="${USERS:-20000}"
MESSAGES="${MESSAGES:-3}"
IFS=', ' read -r -a PORTS <<<"${PORTS:-9341,9342}"
SOURCES="${SOURCES:-8}"
RATE="${RATE:-1000}"
STORM_TIMEOUT="${STORM_TIMEOUT:-180}"
PREFIX=st

for v in DRAIN STAY USERS MESSAGES; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$v is a whole number" >&2; exit 2; }
done
[ $(( DRAIN % 2 )) = 0 ] || { echo "DRAIN is even (its users pair up)" >&2; exit 2; }
[ "$USERS" -ge $(( DRAIN + STAY )) ] || { echo "USERS >= DRAIN + STAY" >&2; exit 2; }
[ "${#PORTS[@]}" = 2 ] || { echo "PORTS: two ports" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)"
echo "open files: soft $(ulimit -n), hard $(ulimit -Hn)"

source loadtest/cluster.sh
cluster_init storm
read -r -a extra_env <<<"${NODE_ENV_EXTRA:-}"
NODE_ENV+=("${extra_env[@]}")

cluster_binaries
LT="$LOADTEST_BIN"

A="http://127.0.0.1:${PORTS[0]}"
B="http://127.0.0.1:${PORTS[1]}"
echo "db $DB, redis prefix $PREFIX_REDIS, results in $OUT"
start_node "${PORTS[0]}" storm-a 4
start_node "${PORTS[1]}" storm-b 4
PID_A="${NODE_PIDS[0]}"

NODE="$A" PREFIX="$PREFIX" loadtest/seed.sh "$DB" "$USERS" $(( DRAIN / 2 )) 0 | tee "$OUT/seed.txt"

now_ms() { date +%s%3N; }
gen() { # n hosts offset users extra-env...
  local g="$1" hosts="$2" offset="$3" users="$4"
  shift 4
  env LOADTEST_HOSTS="$hosts" LOADTEST_RUN="s$TAG" LOADTEST_SEEDED="$PREFIX" \
    LOADTEST_USER_OFFSET="$offset" LOADTEST_SOURCES="$SOURCES" "$@" \
    "$LT" --host "$hosts" --scenarios connections --users "$users" \
      --increase-rate "$RATE" --run-time 2h --report-file "$OUT/report-$g.json" \
      >"$OUT/gen-$g.txt" 2>&1 &
  GEN_PIDS+=("$!")
}
t0=$(now_ms)
gen 1 "$A" 0 "$DRAIN" LOADTEST_RECONNECT_HOSTS="$A,$B" \
  LOADTEST_RESYNC_TARGET="$DRAIN" LOADTEST_SYNC_EXPECT="$MESSAGES"
gen 2 "$B" "$DRAIN" "$STAY"

# Every socket open, or no new one for 60 s (a user that gave up logging in on a starved
# machine): the storm then drains what A holds, and says so.
last_total=0 still_since=$(date +%s)
while :; do
  a=$(node_sockets "${PORTS[0]}"); b=$(node_sockets "${PORTS[1]}")
  opened=$(cat "$OUT"/gen-*.txt 2>/dev/null | grep -c '^all_open:' || true)
  [ "${a:-0}" -ge "$DRAIN" ] && [ "${b:-0}" -ge "$STAY" ] && [ "$opened" -ge 2 ] && break
  total=$(( ${a:-0} + ${b:-0} ))
  if [ "$total" != "$last_total" ]; then last_total=$total still_since=$(date +%s); fi
  if [ $(( $(date +%s) - still_since )) -ge 60 ]; then
    echo "not all open: A $a of $DRAIN, B $b of $STAY, none new for 60 s; storming with these" >&2
    break
  fi
  sleep 0.5
done
echo "open: A ${a} B ${b} after $(( $(now_ms) - t0 )) ms"
sleep 3

# Messages nobody saw live: each of A's conversations gets MESSAGES more.
if [ -n "$(mariadb -uroot -h127.0.0.1 -N "$DB" -e "SHOW COLUMNS FROM messages LIKE 'recipient_id'")" ]; then
  cols="channel_id, sender_id, recipient_id, client_id, body, sent_at"
  vals="c.id, IF(m.seq % 2, c.user_low, c.user_high), IF(m.seq % 2, c.user_high, c.user_low),"
else
  cols="channel_id, sender_id, client_id, body, sent_at"
  vals="c.id, IF(m.seq % 2, c.user_low, c.user_high),"
fi
if [ "$MESSAGES" -gt 0 ]; then
  mariadb -uroot -h127.0.0.1 "$DB" -e "INSERT INTO messages ($cols)
    SELECT $vals NULL, CONCAT('while away ', m.seq), NOW(6)
    FROM channels c JOIN seq_1_to_$MESSAGES m ORDER BY c.id, m.seq"
fi
stored=$(mariadb -uroot -h127.0.0.1 -N "$DB" -e "SELECT COUNT(*) FROM messages")
echo "messages written while the clients are connected, not published: $stored"

{ date -u; uptime; top -b -n1 -w 200 | head -30; } >"$OUT/top-before.txt" 2>&1 || true
refused0=$(curl -fs "http://127.0.0.1:$(( PORTS[1] + 10 ))/metrics" | awk '$1 == "chat_ws_admission_refused_total" { print int($2) }')
a_held=$(node_sockets "${PORTS[0]}"); b_held=$(node_sockets "${PORTS[1]}")
t_term=$(now_ms)
kill -TERM "$PID_A"
echo "SIGTERM to node A (pid $PID_A) at unix_ms $t_term"
( sleep 3; { date -u; uptime; top -b -n1 -w 200 | head -30; } >"$OUT/top-storm.txt" 2>&1 ) &
all_on_b=""
a_exit=""
while :; do
  t=$(now_ms)
  if [ -z "$a_exit" ] && ! kill -0 "$PID_A" 2>/dev/null; then a_exit=$(( t - t_term )); fi
  b=$(node_sockets "${PORTS[1]}")
  if [ -z "$all_on_b" ] && [ "${b:-0}" -ge $(( a_held + b_held )) ]; then all_on_b=$(( t - t_term )); fi
  line=$(grep -h '^all_resynced:' "$OUT/gen-1.txt" || true)
  if [ -z "$line" ]; then
    # A held fewer than DRAIN: done once as many as it held have synced.
    line=$(grep -h '^resynced:' "$OUT/gen-1.txt" | tail -1 \
      | awk -v want="$a_held" '$3 >= want' || true)
  fi
  if [ -n "$line" ] && [ -n "$all_on_b" ]; then break; fi
  if [ $(( t - t_term )) -gt $(( STORM_TIMEOUT * 1000 )) ]; then echo "storm not over after ${STORM_TIMEOUT}s: B holds $b" >&2; break; fi
  sleep 0.2
done
resynced_ms=""
if [ -n "$line" ]; then
  last=$(awk '{ for (i = 1; i < NF; i++) if ($i == "unix_ms") print $(i + 1) }' <<<"$line")
  resynced_ms=$(( last - t_term ))
fi
refused1=$(curl -fs "http://127.0.0.1:$(( PORTS[1] + 10 ))/metrics" | awk '$1 == "chat_ws_admission_refused_total" { print int($2) }')
sleep 2
for pid in "${GEN_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
for pid in "${GEN_PIDS[@]}"; do wait "$pid" || echo "generator $pid exit $?" >&2; done
GEN_PIDS=()

echo
echo "== storm: node A with $DRAIN sockets drained into node B with $STAY, directory $USERS users, $MESSAGES unseen messages per client of A, $(nproc) cores"
echo "at SIGTERM A held $a_held sockets and B $b_held"
echo "A exited ${a_exit:-?} ms after SIGTERM; B held all $(( a_held + b_held )) ${all_on_b:-never} ms after SIGTERM; the last of A's clients finished its sync ${resynced_ms:-never} ms after SIGTERM"
echo "B refused $(( ${refused1:-0} - ${refused0:-0} )) upgrades with 503 + Retry-After during the storm"
echo "generator 1 (A's clients):"
grep -h '^opened:\|^resync:\|^server close\|^reconnect failure\|^all_resynced' "$OUT/gen-1.txt" | sed 's/^/  /'
echo "generator 2 (B's clients):"
grep -h '^opened:\|^server close' "$OUT/gen-2.txt" | sed 's/^/  /'
echo "load before the storm: $(sed -n 2p "$OUT/top-before.txt"); 3 s into it: $(sed -n 2p "$OUT/top-storm.txt" 2>/dev/null)"
sed -n '8,20p' "$OUT/top-storm.txt" 2>/dev/null | sed 's/^/  /'
