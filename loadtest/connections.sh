#!/usr/bin/env bash
# Connection scale: how much memory and idle CPU a node spends per open WebSocket, and
# how fast a fresh cluster takes N logins and upgrades.
#
#   loadtest/connections.sh 2000                  # 2,000 users, 2,000 sockets
#   DIRECTORY=500 loadtest/connections.sh 500     # a 500-user directory, 500 sockets
#   loadtest/connections.sh 20000                 # two generator processes (> SPLIT)
#
# Starts two fresh release nodes (fresh database and Redis prefix, random session key,
# CHAT_DEV=true, bcrypt cost 4 so logins of seeded users are cheap), seeds the directory
# with loadtest/seed.sh, and runs the `connections` scenario: every user logs in over
# HTTP and holds one WebSocket (source addresses 127.0.0.2.., a ping every 20 s).
# By default (LOGINS_FIRST=1) every user logs in first, and only then do the sockets open,
# DIAL_RATE a second per generator: the time to open all is then the time the nodes take
# to upgrade sockets whose sessions exist, as in a reconnect storm, and bcrypt (measured
# by loadtest/login.sh) is not part of it. LOGINS_FIRST=0: each user opens its socket as
# soon as it has logged in, and the time to open includes the logins.
# Once the nodes' chat_ws_connections add up to the sockets wanted it waits for the
# generator's second RSS reading, samples each node's CPU for CPU_SECS, stops the
# generators (SIGINT: goose closes the sockets and prints its report) and prints:
# sockets per node, time to open all, connect p50/p99, RSS per socket per node (KiB),
# idle CPU per node (% of one core).
#
# DIRECTORY: `all` (default) seeds N users and holds N sockets; a number D seeds D users
# and holds N sockets: with N > D user n logs in as seeded user n mod D, so each user
# holds several sockets like several tabs (the nodes' per-user socket limit is raised to
# fit). DIRECTORY=500: the small-directory points, where every socket lists, and follows
# the presence of, every user.
# Env: PORTS (default 9281,9282; each node's /metrics listens 10 ports higher), SOURCES
# (source addresses, default 8), RATE (users started per second per generator, default
# 1000), LOGINS_FIRST (1), DIAL_RATE (sockets opened per second per generator once all
# are logged in, default 1000; 0 is all at once), SPLIT (above this many sockets two
# generator processes share them, default 9000), PREFIX (seeded names, default ls),
# CPU_SECS (10), RSS_SETTLE_MS (3000), OPEN_TIMEOUT (s, default 120 + N/50),
# CHAT_NODE_BIN (a node binary instead of this tree's release build), OUT,
# CARGO_TARGET_DIR.
# The hard limit of open files (ulimit -Hn, 20,000 here) bounds each process: the script
# raises the soft limit to it; past ~19,000 sockets per node run more nodes.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
N="${1:-1000}"
DIRECTORY="${DIRECTORY:-all}"
IFS=', ' read -r -a PORTS <<<"${PORTS:-9281,9282}"
SOURCES="${SOURCES:-8}"
RATE="${RATE:-1000}"
SPLIT="${SPLIT:-9000}"
PREFIX="${PREFIX:-ls}"
CPU_SECS="${CPU_SECS:-10}"
LOGINS_FIRST="${LOGINS_FIRST:-1}"
DIAL_RATE="${DIAL_RATE:-1000}"
RSS_SETTLE_MS="${RSS_SETTLE_MS:-3000}"

[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] || { echo "N is a number of sockets >= 1" >&2; exit 2; }
case "$DIRECTORY" in
  all) USERS="$N" SOCKETS="$N" ;;
  *[!0-9]*|'') echo "DIRECTORY is 'all' or a number of users" >&2; exit 2 ;;
  *) USERS="$DIRECTORY" SOCKETS="$N" ;;
esac
TABS=$(( (SOCKETS + USERS - 1) / USERS ))
OPEN_TIMEOUT="${OPEN_TIMEOUT:-$(( 120 + SOCKETS / 50 ))}"

ulimit -n "$(ulimit -Hn)"
echo "open files: soft $(ulimit -n), hard $(ulimit -Hn)"

source loadtest/cluster.sh
cluster_init conn

cluster_binaries
LT="$LOADTEST_BIN"

HOSTS=""
METRICS=""
if [ "$TABS" -gt 1 ]; then
  # Users hold TABS sockets each, spread over the nodes; the default limit is 10 a node.
  NODE_ENV+=(CHAT_WS_MAX_SOCKETS_PER_USER=$(( TABS + 10 )))
fi
for port in "${PORTS[@]}"; do
  HOSTS+="${HOSTS:+,}http://127.0.0.1:$port"
  METRICS+="${METRICS:+,}http://127.0.0.1:$(( port + 10 ))"
done
echo "db $DB, redis prefix $PREFIX_REDIS, results in $OUT"
i=0
for port in "${PORTS[@]}"; do
  i=$(( i + 1 ))
  start_node "$port" "conn-$i" 4
done
PIDS_CSV="$(IFS=,; echo "${NODE_PIDS[*]}")"

NODE="http://127.0.0.1:${PORTS[0]}" PREFIX="$PREFIX" loadtest/seed.sh "$DB" "$USERS" | tee "$OUT/seed.txt"

# The script's own RSS baseline (the generator's `rss:` line needs every socket open; this
# one is printed even when some never opened), and the kernel's TCP memory (pages).
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
rss0=()
for pid in "${NODE_PIDS[@]}"; do rss0+=("$(rss_kib "$pid")"); done
tcp_pages0=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)

# Generator processes: one up to SPLIT sockets, else two, the second after the first's users.
if [ "$SOCKETS" -gt "$SPLIT" ]; then
  FIRST=$(( (SOCKETS + 1) / 2 ))
  GENS=("$FIRST" "$(( SOCKETS - FIRST ))")
else
  GENS=("$SOCKETS")
fi
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
mkdir -p "$OUT/gate"
t0=$(now)
offset=0
g=0
for users in "${GENS[@]}"; do
  g=$(( g + 1 ))
  extra=()
  if [ "$g" -eq 1 ]; then
    extra=(LOADTEST_NODE_PIDS="$PIDS_CSV" LOADTEST_NODE_METRICS="$METRICS"
           LOADTEST_EXPECT_SOCKETS="$SOCKETS"
           LOADTEST_RSS_SETTLE_MS="$RSS_SETTLE_MS")
  fi
  if [ "$LOGINS_FIRST" = 1 ]; then
    extra+=(LOADTEST_LOGINS_FIRST=1 LOADTEST_DIAL_RATE="$DIAL_RATE"
            LOADTEST_GATE_DIR="$OUT/gate" LOADTEST_GATE_PROCS="${#GENS[@]}")
  fi
  env LOADTEST_HOSTS="$HOSTS" LOADTEST_RUN="c$TAG" LOADTEST_SEEDED="$PREFIX" \
    LOADTEST_USER_OFFSET="$offset" LOADTEST_SOURCES="$SOURCES" LOADTEST_SEEDED_USERS="$USERS" \
    LOADTEST_CONNECT_LOG="$OUT/connect-$g.us" "${extra[@]}" \
    "$LT" --host "http://127.0.0.1:${PORTS[0]}" --scenarios connections \
      --users "$users" --increase-rate "$RATE" --run-time 2h \
      --report-file "$OUT/report-$g.json" >"$OUT/gen-$g.txt" 2>&1 &
  GEN_PIDS+=("$!")
  offset=$(( offset + users ))
  # The first generator reads the nodes' RSS baseline at its start: before any socket.
  if [ "$g" -eq 1 ] && [ "${#GENS[@]}" -gt 1 ]; then sleep 1; fi
done

# Wait until the nodes hold every socket and each generator has had every one of its
# sockets past its updateUsers (its `all_open:` line; a node counts a socket from the
# upgrade on, before its updateUsers is built).
per_node() { for port in "${PORTS[@]}"; do echo -n "$(node_sockets "$port") "; done; }
t0_ms=$(awk -v t="$t0" 'BEGIN { printf "%d", t * 1000 }')
open_s=""
while :; do
  read -r -a counts <<<"$(per_node)"
  total=0
  for c in "${counts[@]}"; do total=$(( total + c )); done
  done_gens=$(cat "$OUT"/gen-*.txt 2>/dev/null | grep -c "^all_open:" || true)
  if [ "$total" -ge "$SOCKETS" ] && [ "$done_gens" -ge "${#GENS[@]}" ]; then
    last_ms=$(cat "$OUT"/gen-*.txt | awk '$1 == "all_open:" {
      for (i = 2; i < NF; i++) if ($i == "unix_ms") print $(i + 1) }' | sort -n | tail -1)
    # With LOGINS_FIRST the sockets open from the first `dial_start:` on.
    dial_ms=$(cat "$OUT"/gen-*.txt | awk '$1 == "dial_start:" {
      for (i = 2; i < NF; i++) if ($i == "unix_ms") print $(i + 1) }' | sort -n | head -1)
    from_ms="${dial_ms:-$t0_ms}"
    open_s=$(awk -v a="$from_ms" -v b="$last_ms" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
    if [ -n "$dial_ms" ]; then
      login_s=$(awk -v a="$t0_ms" -v b="$dial_ms" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
    fi
    break
  fi
  alive=0
  for pid in "${GEN_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  if [ "$alive" = 0 ]; then echo "generators ended with $total sockets open" >&2; break; fi
  if awk -v s="$(since "$t0")" -v t="$OPEN_TIMEOUT" 'BEGIN { exit !(s > t) }'; then
    echo "only $total of $SOCKETS sockets open (nodes' count) after ${OPEN_TIMEOUT}s" >&2
    break
  fi
  sleep 0.25
done
if [ -n "${login_s:-}" ]; then
  echo "open: ${counts[*]} (logins took ${login_s} s, then ${open_s:-not all} s to open every socket)"
else
  echo "open: ${counts[*]} (${open_s:-not all} s after the generators started)"
fi

# The generator reads RSS RSS_SETTLE_MS after all are open; sample CPU after that.
sleep "$(awk -v ms="$RSS_SETTLE_MS" 'BEGIN { print ms / 1000 + 1 }')"
# The machine is shared: what else ran while CPU was sampled.
{ date -u; uptime; top -b -n1 -w 200 | head -30; } >"$OUT/top.txt" 2>&1 || true
tck=$(getconf CLK_TCK)
before=()
for pid in "${NODE_PIDS[@]}" "${GEN_PIDS[@]}"; do before+=("$(node_cpu_ticks "$pid" 2>/dev/null || echo 0)"); done
read -r _ u0 n0 s0 idle0 io0 irq0 sirq0 st0 _ </proc/stat
sleep "$CPU_SECS"
after=()
for pid in "${NODE_PIDS[@]}" "${GEN_PIDS[@]}"; do after+=("$(node_cpu_ticks "$pid" 2>/dev/null || echo 0)"); done
read -r _ u1 n1 s1 idle1 io1 irq1 sirq1 st1 _ </proc/stat
busy=$(( (u1 + n1 + s1 + irq1 + sirq1 + st1) - (u0 + n0 + s0 + irq0 + sirq0 + st0) ))
all=$(( busy + (idle1 + io1) - (idle0 + io0) ))
machine=$(awk -v b="$busy" -v a="$all" -v c="$(nproc)" 'BEGIN { printf "%.0f", a ? 100 * c * b / a : 0 }')
cpu=()
for k in "${!before[@]}"; do
  cpu+=("$(awk -v d="$(( ${after[$k]} - ${before[$k]} ))" -v t="$tck" -v s="$CPU_SECS" \
    'BEGIN { printf "%.1f", 100 * d / t / s }')")
done
read -r -a final <<<"$(per_node)"
rss1=()
for pid in "${NODE_PIDS[@]}"; do rss1+=("$(rss_kib "$pid")"); done
tcp_pages1=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat)

for pid in "${GEN_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
for pid in "${GEN_PIDS[@]}"; do wait "$pid" || echo "generator $pid exit $?" >&2; done
GEN_PIDS=()

# Connect latency over every generator process.
cat "$OUT"/connect-*.us 2>/dev/null | sort -n >"$OUT/connect.us" || true
pct() { awk -v p="$1" '{ v[NR] = $1 } END { if (!NR) { print "-"; exit }
  r = int(p / 100 * NR); if (r < p / 100 * NR) r++; if (r < 1) r = 1; printf "%.1f", v[r] / 1000 }' "$OUT/connect.us"; }

echo
echo "== connections: $SOCKETS sockets, directory $USERS users, ${#PORTS[@]} nodes, ${#GENS[@]} generator(s), $(nproc) cores, machine busy ${machine}% of $(( $(nproc) * 100 ))% during the CPU sample"
{ grep -h '^all_open:\|^opened:\|^connect:\|^sockets:\|^server close' "$OUT"/gen-*.txt || true; } | sed 's/^/  /'
echo "| node | sockets at RSS reading | sockets after CPU sample | RSS before KiB | RSS after KiB | RSS per socket KiB | idle CPU % of a core |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
i=0
for port in "${PORTS[@]}"; do
  line="$(grep -h "^rss: host http://127.0.0.1:$port " "$OUT/gen-1.txt" || true)"
  field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$line"; }
  echo "| :$port | $(field sockets) | ${final[$i]:-?} | $(field before_kib) | $(field after_kib) | $(field per_socket_kib) | ${cpu[$i]} |"
  i=$(( i + 1 ))
done
grep -h '^rss: not measured' "$OUT/gen-1.txt" || true
i=0
for port in "${PORTS[@]}"; do
  echo "script's reading, node :$port: RSS ${rss0[$i]} KiB before the generators, ${rss1[$i]} KiB after the CPU sample with ${final[$i]:-0} sockets: $(awk -v a="${rss0[$i]}" -v b="${rss1[$i]}" -v n="${final[$i]:-0}" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }') KiB per socket"
  i=$(( i + 1 ))
done
echo "kernel TCP memory (sockstat, whole machine): $tcp_pages0 -> $tcp_pages1 pages of 4 KiB"
g=0
for users in "${GENS[@]}"; do
  echo "generator $(( g + 1 )) ($users users): CPU ${cpu[$(( ${#PORTS[@]} + g ))]}% of a core during the sample"
  g=$(( g + 1 ))
done
echo "load during the CPU sample: $(sed -n 2p "$OUT/top.txt"); top snapshot in $OUT/top.txt:"
sed -n '8,22p' "$OUT/top.txt" | sed 's/^/  /'
if [ -n "${login_s:-}" ]; then
  pace="sockets dialled at $DIAL_RATE/s per generator"
  [ "$DIAL_RATE" = 0 ] && pace="every socket dialled at once"
  echo "logins: ${login_s} s (generators started -> every user logged in; users started at $RATE/s per generator)"
  echo "time to open all: ${open_s:-not all} s (first socket dialled -> last socket past its updateUsers; $pace)"
else
  echo "time to open all: ${open_s:-not all} s (generators started -> last socket past its updateUsers; users started at $RATE/s per generator, so at least $(( (SOCKETS + ${#GENS[@]} * RATE - 1) / (${#GENS[@]} * RATE) )) s)"
fi
echo "connect (upgrade + updateUsers) ms: n $(wc -l <"$OUT/connect.us") p50 $(pct 50) p99 $(pct 99) max $(pct 100)"
