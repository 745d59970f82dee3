#!/usr/bin/env bash
# Back-to-back A/B benchmark of the `chat` scenario: an OLD commit against the NEW code
# (by default the working tree of this clone), on this machine, with one load generator
# binary for both, in one run of this script.
#
#   loadtest/ab.sh                          # saturation: 600 users at a 60-61 ms pace
#   RATES="5300 67%" loadtest/ab.sh         # plus fixed offered rates (msgs/s, or a
#                                           # percentage of NEW's saturation measured here)
#   PROFILE=1 loadtest/ab.sh                # plus perf + flamegraph of NEW's node A
#
# For each side and configuration: a fresh database and Redis prefix, two nodes on
# PORT_A/PORT_B, the goose `chat` scenario only (partners on different nodes), a ramp-up,
# WARMUP, then the measured window of RUN_TIME. In the window: acknowledged messages/s
# and ack latency p50/p95/p99/max (exact, from the generator's `window:` line), the CPU
# seconds of node A, node B, mariadbd, redis-server, the generator and everything else
# (/proc/<pid>/stat and /proc/stat deltas), and from both nodes' /metrics the deltas of
# stored messages, `chat_writer_batch_size` (average batch, "n/a" when the node has no
# such metric) and `chat_db_write_seconds`. Prints markdown tables with new/old ratios,
# the machine and the command line; everything is kept under $OUT.
#
# The closed loop offers at most USERS × 1000 / (pace + ack latency) msgs/s (about 9,900
# at 600 users and 60 ms; the pace cannot go under 60 ms, the 20 frames/s limit), so when
# a side reaches that (the tables say "Not saturated") raise USERS to find its ceiling.
#
# Builds: OLD in a git worktree outside the clone (AB_WORKTREE, default
# /tmp/chat-ab-base, reused when present) with its own target dir (AB_TARGET, default
# ~/.cache/chat-ab-base-target); NEW from this clone with CARGO_TARGET_DIR (default
# ~/.cache/chat-target), or, with NEW_REV=<rev>, in a second worktree (AB_NEW_WORKTREE,
# default /tmp/chat-ab-new; target ~/.cache/chat-ab-new-target), or the OLD binary itself
# when NEW_REV names the same commit (to check the harness: both sides equal). The
# generator is `loadtest` built from this clone (or LOADTEST_BIN). All binaries are
# copied to $OUT/bin first, so a rebuild by someone else cannot swap them mid-run.
#
# Env (defaults): OLD_REV (81b2b36), NEW_REV (empty: working tree), SIDES ("old new"),
# USERS (600), PACE (60-61, LOADTEST_CHAT_WAIT_MS of the saturation run), SATURATION (1),
# RATES (empty; fixed-rate runs use LOADTEST_CHAT_INTERVAL_MS = USERS*1000/rate),
# RUN_TIME (60s), WARMUP (10s), INCREASE_RATE (100 users/s), REPEAT (1; pairs per
# configuration, in ABBA order), PORT_A/PORT_B (9281/9282), NODE_ENV_OLD/NODE_ENV_NEW
# (extra VAR=value words for that side's nodes), PROFILE (0), PROFILE_FREQ (99 Hz per core),
# PROFILE_CALLGRAPH (dwarf,16384), OUT (/tmp/chat-ab-<tag>), LOADTEST_BIN.
# Needs MariaDB on 127.0.0.1:3306 (root, no password) and Redis on 127.0.0.1:6379.
set -euo pipefail

KNOBS=(OLD_REV NEW_REV SIDES USERS PACE SATURATION RATES RUN_TIME WARMUP INCREASE_RATE
  REPEAT PORT_A PORT_B NODE_ENV_OLD NODE_ENV_NEW PROFILE PROFILE_FREQ PROFILE_CALLGRAPH
  OUT LOADTEST_BIN AB_WORKTREE AB_TARGET AB_NEW_WORKTREE AB_NEW_TARGET CARGO_TARGET_DIR)
COMMAND=""
for k in "${KNOBS[@]}"; do
  if [ -n "${!k+x}" ]; then COMMAND+="$k=$(printf '%q' "${!k}") "; fi
done
COMMAND+="loadtest/ab.sh${*:+ $*}"

cd "$(dirname "$0")/.."
REPO="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}"
OLD_REV="${OLD_REV:-81b2b36}"
NEW_REV="${NEW_REV:-}"
SIDES="${SIDES:-old new}"
USERS="${USERS:-600}"
PACE="${PACE:-60-61}"
SATURATION="${SATURATION:-1}"
RATES="${RATES:-}"
RUN_TIME="${RUN_TIME:-60s}"
WARMUP="${WARMUP:-10s}"
INCREASE_RATE="${INCREASE_RATE:-100}"
REPEAT="${REPEAT:-1}"
PORT_A="${PORT_A:-9281}"
PORT_B="${PORT_B:-9282}"
PROFILE="${PROFILE:-0}"
PROFILE_FREQ="${PROFILE_FREQ:-99}"
PROFILE_CALLGRAPH="${PROFILE_CALLGRAPH:-dwarf,16384}"
AB_WORKTREE="${AB_WORKTREE:-/tmp/chat-ab-base}"
AB_TARGET="${AB_TARGET:-$HOME/.cache/chat-ab-base-target}"
AB_NEW_WORKTREE="${AB_NEW_WORKTREE:-/tmp/chat-ab-new}"
AB_NEW_TARGET="${AB_NEW_TARGET:-$HOME/.cache/chat-ab-new-target}"
TAG="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')" # 6 hex characters
OUT="${OUT:-/tmp/chat-ab-$TAG}"
KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" # 64 hex characters

die() { echo "ab.sh: $*" >&2; exit 1; }
log() { echo "[ab $(date +%T)] $*" >&2; }
secs() { # 60s, 2m, 90 -> seconds
  case "$1" in
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
RUN_S="$(secs "$RUN_TIME")"
WARMUP_S="$(secs "$WARMUP")"
[[ "$RUN_S" =~ ^[0-9]+$ && "$RUN_S" -gt 0 ]] || die "RUN_TIME: $RUN_TIME"
[[ "$WARMUP_S" =~ ^[0-9]+$ ]] || die "WARMUP: $WARMUP"
[[ "$USERS" =~ ^[0-9]+$ && "$USERS" -ge 2 ]] || die "USERS: $USERS"
for side in $SIDES; do [[ "$side" == old || "$side" == new ]] || die "SIDES: $side"; done
command -v python3 >/dev/null || die "needs python3 for the tables"

# One A/B run at a time on this machine.
exec 9>/tmp/chat-ab.lock
flock -n 9 || die "another loadtest/ab.sh holds /tmp/chat-ab.lock"

mkdir -p "$OUT/bin"
: >"$OUT/runs.txt"
echo "$COMMAND" >"$OUT/command.txt"
log "results in $OUT"

# ---------------------------------------------------------------- builds

# Checks out rev in a worktree outside the clone (creating or reusing it), builds
# chat-node there in release mode and prints the binary's path.
build_rev() { # rev worktree target log
  local rev="$1" wt="$2" target="$3" logf="$4" sha
  sha="$(git -C "$REPO" rev-parse --verify "$rev^{commit}")" || die "unknown revision $rev"
  if [ -e "$wt/.git" ]; then
    [ "$(git -C "$wt" rev-parse --git-common-dir)" -ef "$(git -C "$REPO" rev-parse --git-common-dir)" ] \
      || die "$wt is not a worktree of $REPO"
    if [ "$(git -C "$wt" rev-parse HEAD)" != "$sha" ]; then
      git -C "$wt" checkout -q --detach "$sha" >&2
    fi
  else
    [ -e "$wt" ] && die "$wt exists and is not a git worktree"
    git -C "$REPO" worktree prune
    git -C "$REPO" worktree add -q --detach "$wt" "$sha" >&2
  fi
  [ -z "$(git -C "$wt" status --porcelain --untracked-files=no)" ] || die "$wt has local changes"
  log "building chat-node $rev ($sha) in $wt, target $target"
  (cd "$wt" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p chat-node) \
    >"$logf" 2>&1 || { tail -20 "$logf" >&2; die "build of $rev failed ($logf)"; }
  echo "$target/release/chat-node"
}

want_side() { [[ " $SIDES " == *" $1 "* ]]; }

OLD_SHA="$(git rev-parse --verify "$OLD_REV^{commit}")" || die "unknown OLD_REV $OLD_REV"
OLD_DESC="$(git log -1 --format='%h %s' "$OLD_SHA" | cut -c1-90)"
if want_side old || { [ -n "$NEW_REV" ] && [ "$(git rev-parse "$NEW_REV^{commit}")" = "$OLD_SHA" ]; }; then
  bin="$(build_rev "$OLD_SHA" "$AB_WORKTREE" "$AB_TARGET" "$OUT/build-old.log")"
  cp "$bin" "$OUT/bin/chat-node-old"
fi

if want_side new; then
  if [ -z "$NEW_REV" ]; then
    NEW_DESC="working tree on $(git rev-parse --short HEAD), $(git status --porcelain | wc -l) changed/untracked paths"
    { git rev-parse HEAD; git status --porcelain; git diff HEAD --stat; } >"$OUT/new-tree.txt"
    log "building chat-node from the working tree, target $CARGO_TARGET_DIR"
    cargo build --release -p chat-node >"$OUT/build-new.log" 2>&1 \
      || { tail -20 "$OUT/build-new.log" >&2; die "build of the working tree failed ($OUT/build-new.log); NEW_REV=<rev> or SIDES=old"; }
    cp "$CARGO_TARGET_DIR/release/chat-node" "$OUT/bin/chat-node-new"
  else
    NEW_SHA="$(git rev-parse --verify "$NEW_REV^{commit}")" || die "unknown NEW_REV $NEW_REV"
    NEW_DESC="$(git log -1 --format='%h %s' "$NEW_SHA" | cut -c1-90)"
    if [ "$NEW_SHA" = "$OLD_SHA" ]; then
      NEW_DESC="$NEW_DESC (same binary as old)"
      cp "$OUT/bin/chat-node-old" "$OUT/bin/chat-node-new"
    else
      bin="$(build_rev "$NEW_SHA" "$AB_NEW_WORKTREE" "$AB_NEW_TARGET" "$OUT/build-new.log")"
      cp "$bin" "$OUT/bin/chat-node-new"
    fi
  fi
fi

if [ -n "${LOADTEST_BIN:-}" ]; then
  cp "$LOADTEST_BIN" "$OUT/bin/loadtest"
  LT_DESC="$LOADTEST_BIN"
else
  log "building loadtest from this clone"
  cargo build --release -p loadtest >"$OUT/build-loadtest.log" 2>&1 \
    || { tail -20 "$OUT/build-loadtest.log" >&2; die "loadtest build failed; LOADTEST_BIN=<a built one>"; }
  cp "$CARGO_TARGET_DIR/release/loadtest" "$OUT/bin/loadtest"
  LT_DESC="loadtest from this clone ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- loadtest || echo ', loadtest/ modified'))"
fi
LT="$OUT/bin/loadtest"

if [ "$PROFILE" = 1 ]; then
  command -v perf >/dev/null || die "PROFILE=1 needs perf (apt-get install -y linux-perf)"
  if ! command -v inferno-flamegraph >/dev/null; then
    log "installing inferno (cargo install inferno) for the flamegraph"
    cargo install inferno >"$OUT/install-inferno.log" 2>&1 || die "cargo install inferno failed"
  fi
fi

# ---------------------------------------------------------------- machine

MARIADB_PID="$(ss -ltnpH 'sport = :3306' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
MARIADB_PID="${MARIADB_PID:-$(pgrep -xo mariadbd || pgrep -xo mysqld || true)}"
REDIS_PID="$(redis-cli info server | tr -d '\r' | awk -F: '$1=="process_id"{print $2}')"
[ -n "$MARIADB_PID" ] || die "no MariaDB process found"
[ -n "$REDIS_PID" ] || die "no Redis process found"
{
  echo "nproc=$(nproc)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "kernel=$(uname -r)"
  echo "mem=$(free -h | awk '/^Mem:/{print $2}')"
  echo "mariadb=$(mariadb -uroot -h127.0.0.1 -N -e 'SELECT VERSION()')"
  echo "redis=$(redis-cli info server | tr -d '\r' | sed -n 's/^redis_version://p')"
  echo "rustc=$(rustc --version)"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "old=$OLD_DESC"
  echo "new=${NEW_DESC:-not run}"
  echo "generator=$LT_DESC"
  echo "command=$COMMAND"
} >"$OUT/machine.txt"

# ---------------------------------------------------------------- one run

PIDS=()
LT_PID=""
PERF_PID=""
DBS=()
PREFIXES=()

stop_nodes() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
drop_run_data() { # db prefix
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$1\`" || true
  redis-cli --scan --pattern "$2:*" | xargs -r -n 500 redis-cli del >/dev/null || true
}
cleanup() {
  [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null || true
  [ -n "$LT_PID" ] && kill "$LT_PID" 2>/dev/null || true
  stop_nodes
  local i
  for i in "${!DBS[@]}"; do drop_run_data "${DBS[$i]}" "${PREFIXES[$i]}"; done
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
sleep_until() { # unix ms
  local d=$(( $1 - $(now_ms) ))
  if [ "$d" -gt 0 ]; then sleep "$(awk -v d="$d" 'BEGIN{printf "%.3f", d/1000}')"; fi
}
ticks() { # pid -> utime+stime in clock ticks
  awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo -1
}
snapshot() { # file node_a node_b loadtest [perf]
  {
    echo "t_ms $(now_ms)"
    echo "machine $(head -1 /proc/stat | cut -d' ' -f2-)"
    echo "node_a $(ticks "$2")"
    echo "node_b $(ticks "$3")"
    echo "mariadbd $(ticks "$MARIADB_PID")"
    echo "redis $(ticks "$REDIS_PID")"
    echo "loadtest $(ticks "$4")"
    if [ -n "${5:-}" ]; then echo "perf $(ticks "$5")"; fi
  } >"$1"
  # Every process, to name what else used the CPU ("pid ticks comm"). Processes in
  # other PID namespaces are not seen here at all.
  awk '{c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) .*/, "", c); t = $0; sub(/.*\) /, "", t);
        split(t, f, " "); print $1, f[12] + f[13], c}' /proc/[0-9]*/stat 2>/dev/null >"${1%.txt}-all.txt" || true
}

start_node() { # side port id dir
  local side="$1" port="$2" id="$3" dir="$4" extra
  if curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; then die "port $port is in use"; fi
  if [ "$side" = old ]; then extra="${NODE_ENV_OLD:-}"; else extra="${NODE_ENV_NEW:-}"; fi
  # shellcheck disable=SC2086 # extra is a list of VAR=value words
  # Nodes since the HTTP hardening serve /metrics on their own port and limit
  # registrations and failed logins per client address; older ones ignore these.
  env CHAT_LISTEN="127.0.0.1:$port" \
    CHAT_METRICS_LISTEN="127.0.0.1:$((port + 10))" \
    CHAT_REGISTER_MAX_PER_ADDRESS=1000000 \
    CHAT_LOGIN_MAX_FAILURES_PER_ADDRESS=1000000 \
    DATABASE_URL="mysql://root@127.0.0.1:3306/$DB" \
    REDIS_URL="redis://127.0.0.1:6379" \
    CHAT_REDIS_PREFIX="$PREFIX" \
    CHAT_SESSION_KEY="$KEY" \
    CHAT_BCRYPT_COST=4 \
    CHAT_NODE_ID="$id" \
    RUST_LOG=warn \
    $extra \
    "$OUT/bin/chat-node-$side" >"$dir/$id.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
    kill -0 "$!" 2>/dev/null || { tail -5 "$dir/$id.log" >&2; die "node $id exited"; }
    sleep 0.1
  done
  die "node $id not ready"
}

# scrape <node port> <file>: /metrics from the internal port, or from the public one
# (nodes built before /metrics moved there).
scrape() {
  curl -fs "http://127.0.0.1:$(($1 + 10))/metrics" >"$2" ||
    curl -fs "http://127.0.0.1:$1/metrics" >"$2" || true
}

PROFILED=0
RUN_N=0
# run <side> <config name> <pace kind: wait|interval> <pace value> <target rate or ->
run() {
  local side="$1" config="$2" kind="$3" pace="$4" target="$5"
  RUN_N=$(( RUN_N + 1 ))
  local name="$RUN_N-$config-$side" dir
  dir="$OUT/$name"
  mkdir -p "$dir"
  DB="chat_ab_${TAG}_$RUN_N"
  PREFIX="ab_${TAG}_$RUN_N"
  DBS+=("$DB")
  PREFIXES+=("$PREFIX")
  local run_tag="${TAG}${side:0:1}$RUN_N"
  log "run $name: $USERS users, $kind $pace ms, db $DB"
  start_node "$side" "$PORT_A" "ab-a" "$dir"
  start_node "$side" "$PORT_B" "ab-b" "$dir"
  local pid_a="${PIDS[0]}" pid_b="${PIDS[1]}"
  local ramp_ms=$(( (USERS * 1000 + INCREASE_RATE - 1) / INCREASE_RATE ))
  local t0 w_start w_end
  t0="$(now_ms)"
  w_start=$(( t0 + ramp_ms + WARMUP_S * 1000 + 500 ))
  w_end=$(( w_start + RUN_S * 1000 ))
  local pace_env
  if [ "$kind" = wait ]; then pace_env="LOADTEST_CHAT_WAIT_MS=$pace"; else pace_env="LOADTEST_CHAT_INTERVAL_MS=$pace"; fi
  # goose runs the ramp (USERS / INCREASE_RATE s), then --run-time: warm-up, window, 2 s.
  env LOADTEST_HOSTS="http://127.0.0.1:$PORT_A,http://127.0.0.1:$PORT_B" \
    LOADTEST_RUN="$run_tag" \
    LOADTEST_WINDOW="$w_start-$w_end" \
    "$pace_env" \
    "$LT" --host "http://127.0.0.1:$PORT_A" --scenarios chat \
      --users "$USERS" --increase-rate "$INCREASE_RATE" \
      --run-time "$(( WARMUP_S + RUN_S + 3 ))s" \
      --report-file "$dir/report.json" >"$dir/loadtest.txt" 2>&1 &
  LT_PID=$!
  sleep_until "$w_start"
  snapshot "$dir/snap-start.txt" "$pid_a" "$pid_b" "$LT_PID"
  scrape "$PORT_A" "$dir/metrics-a-start.txt"
  scrape "$PORT_B" "$dir/metrics-b-start.txt"
  local profiled=0 perf_pid=""
  if [ "$PROFILE" = 1 ] && [ "$side" = new ] && [ "$PROFILED" = 0 ]; then
    PROFILED=1
    profiled=1
    log "perf record of node A (pid $pid_a) for the window"
    # System-wide, filtered to node A's pid when rendered: perf 6.1 with -p spins a
    # whole core once a thread of the target exits (tokio's blocking pool does).
    # Stopped with SIGINT right after the window.
    perf record -a -F "$PROFILE_FREQ" --call-graph "$PROFILE_CALLGRAPH" \
      -o "$OUT/perf.data" >"$OUT/perf-record.log" 2>&1 &
    PERF_PID=$!
    perf_pid=$PERF_PID
    echo "$pid_a" >"$OUT/perf.pid"
  fi
  sleep_until "$w_end"
  snapshot "$dir/snap-end.txt" "$pid_a" "$pid_b" "$LT_PID" "$PERF_PID"
  # perf started after the first snapshot: all its CPU is the window's.
  if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null || true; fi
  scrape "$PORT_A" "$dir/metrics-a-end.txt"
  scrape "$PORT_B" "$dir/metrics-b-end.txt"
  if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; PERF_PID=""; fi
  local rc=0 lt_pid="$LT_PID"
  wait "$LT_PID" || rc=$?
  LT_PID=""
  stop_nodes
  drop_run_data "$DB" "$PREFIX"
  {
    echo "side=$side"
    echo "config=$config"
    echo "kind=$kind"
    echo "pace=$pace"
    echo "target=$target"
    echo "users=$USERS"
    echo "loadtest_rc=$rc"
    echo "profiled=$profiled"
    echo "pid_a=$pid_a"
    echo "pid_b=$pid_b"
    echo "pid_lt=$lt_pid"
    echo "pid_mariadbd=$MARIADB_PID"
    echo "pid_redis=$REDIS_PID"
    echo "pid_perf=$perf_pid"
  } >"$dir/meta.txt"
  echo "$name" >>"$OUT/runs.txt"
  local line
  line="$(grep '^window:' "$dir/loadtest.txt" || echo "window: none")"
  log "run $name: $line"
}

window_rate() { # run dir -> acks_per_s
  awk '/^window:/{for (i = 2; i < NF; i++) if ($i == "acks_per_s") print $(i + 1)}' "$OUT/$1/loadtest.txt"
}

# Runs both sides of one configuration REPEAT times, in ABBA order.
pair() { # config kind pace target
  local rep order
  for rep in $(seq 1 "$REPEAT"); do
    if [ $(( rep % 2 )) = 1 ]; then order="old new"; else order="new old"; fi
    for side in $order; do
      if want_side "$side"; then run "$side" "$@"; fi
    done
  done
}

# ---------------------------------------------------------------- the runs

if [ "$SATURATION" = 1 ]; then
  pair sat wait "$PACE" -
fi
for rate in $RATES; do
  if [[ "$rate" == *% ]]; then
    [ "$SATURATION" = 1 ] && want_side new || die "RATES=$rate needs the saturation run of the new side"
    sat="$(grep -- '-sat-new$' "$OUT/runs.txt" | while read -r r; do window_rate "$r"; done \
      | awk '{s += $1; n++} END {if (n) printf "%d", s / n}')"
    [ -n "$sat" ] && [ "$sat" -gt 0 ] || die "no saturation rate of the new side measured"
    rate=$(( sat * ${rate%\%} / 100 ))
    log "fixed rate ${rate} msgs/s from NEW's saturation of $sat msgs/s"
  fi
  [[ "$rate" =~ ^[0-9]+$ && "$rate" -gt 0 ]] || die "RATES entry $rate"
  interval=$(( (USERS * 1000 + rate / 2) / rate ))
  [ "$interval" -ge 60 ] || die "rate $rate with $USERS users needs ${interval} ms per user (< 60, the rate limit); raise USERS"
  pair "r$rate" interval "$interval" "$rate"
done

# ---------------------------------------------------------------- flamegraph

if [ "$PROFILED" = 1 ] && [ -s "$OUT/perf.data" ]; then
  log "rendering $OUT/flame.svg"
  if perf script -i "$OUT/perf.data" --pid "$(cat "$OUT/perf.pid")" 2>"$OUT/perf-script.log" \
    | inferno-collapse-perf >"$OUT/perf.folded" 2>>"$OUT/perf-script.log" \
    && inferno-flamegraph --title "chat-node (new side, node A), $(cat "$OUT/command.txt")" \
      <"$OUT/perf.folded" >"$OUT/flame.svg"; then
    log "flamegraph: $OUT/flame.svg"
  else
    log "flamegraph failed, see $OUT/perf-script.log"
  fi
fi

# ---------------------------------------------------------------- tables

python3 - "$OUT" <<'EOF' | tee "$OUT/results.md"
import os, re, sys

out = sys.argv[1]
HZ = os.sysconf("SC_CLK_TCK")
machine = dict(l.rstrip("\n").split("=", 1) for l in open(f"{out}/machine.txt") if "=" in l)

def kv(path):
    d = {}
    for line in open(path):
        k, _, v = line.rstrip("\n").partition("=")
        d[k] = v
    return d

def snap(path):
    d = {}
    for line in open(path):
        k, _, v = line.strip().partition(" ")
        d[k] = [int(x) for x in v.split()]
    return d

def metrics(path):
    sums = {}
    if not os.path.exists(path):
        return None
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        name = re.split(r"[{ ]", line, 1)[0]
        try:
            sums[name] = sums.get(name, 0.0) + float(line.split()[-1])
        except ValueError:
            pass
    return sums

def window(path):
    for line in open(path):
        if line.startswith("window:"):
            f = line.split()[1:]
            return {f[i]: f[i + 1] for i in range(0, len(f) - 1, 2)}
    return {}

def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None

runs = []
for name in open(f"{out}/runs.txt").read().split():
    d = f"{out}/{name}"
    meta = kv(f"{d}/meta.txt")
    w = window(f"{d}/loadtest.txt")
    s0, s1 = snap(f"{d}/snap-start.txt"), snap(f"{d}/snap-end.txt")
    secs = (s1["t_ms"][0] - s0["t_ms"][0]) / 1000
    cpu = {}
    for k in ["node_a", "node_b", "mariadbd", "redis", "loadtest", "perf"]:
        if k not in s1:
            continue
        a, b = s0.get(k, [0])[0], s1[k][0]
        cpu[k] = (b - a) / HZ if a >= 0 and b >= 0 else None
    m0, m1 = s0["machine"], s1["machine"]
    dm = [b - a for a, b in zip(m0, m1)]  # user nice system idle iowait irq softirq steal
    total = sum(dm[:8]) / HZ
    idle = (dm[3] + dm[4]) / HZ
    irq = (dm[5] + dm[6]) / HZ
    steal = dm[7] / HZ if len(dm) > 7 else 0.0
    busy = total - idle - steal
    other = busy - irq - sum(v for v in cpu.values() if v is not None)
    # The largest other consumers by command name. Partial: a process that exited
    # inside the window is not seen; one that started inside it counts whole.
    def allprocs(path):
        d = {}
        if os.path.exists(path):
            for line in open(path):
                p = line.rstrip("\n").split(" ", 2)
                if len(p) == 3:
                    d[p[0]] = (int(p[1]), p[2])
        return d
    a0, a1 = allprocs(f"{d}/snap-start-all.txt"), allprocs(f"{d}/snap-end-all.txt")
    known = {str(x) for x in [meta.get("pid_a"), meta.get("pid_b"), meta.get("pid_lt"),
                              meta.get("pid_mariadbd"), meta.get("pid_redis"), meta.get("pid_perf")]}
    by_comm = {}
    for pid, (t, comm) in a1.items():
        if pid in known:
            continue
        dt = t - a0.get(pid, (0, comm))[0]
        if dt > 0:
            by_comm[comm] = by_comm.get(comm, 0) + dt / HZ
    top_other = sorted(by_comm.items(), key=lambda x: -x[1])[:4]
    # /metrics deltas over the window, both nodes summed.
    def delta(name):
        tot, seen = 0.0, False
        for node in "ab":
            a, b = metrics(f"{d}/metrics-{node}-start.txt"), metrics(f"{d}/metrics-{node}-end.txt")
            if a is None or b is None or name not in b:
                continue
            tot += b[name] - a.get(name, 0.0)
            seen = True
        return tot if seen else None
    bs, bc = delta("chat_writer_batch_size_sum"), delta("chat_writer_batch_size_count")
    ws, wc = delta("chat_db_write_seconds_sum"), delta("chat_db_write_seconds_count")
    stored = delta("chat_messages_stored_total")
    acks = num(w.get("acks")) or 0
    server = sum(cpu[k] or 0 for k in ["node_a", "node_b", "mariadbd", "redis"])
    runs.append(dict(
        name=name, side=meta["side"], config=meta["config"], kind=meta["kind"],
        pace=meta["pace"], target=meta["target"], users=meta["users"],
        rc=meta["loadtest_rc"], profiled=meta.get("profiled") == "1", secs=secs,
        rate=num(w.get("acks_per_s")), p50=num(w.get("p50_ms")), p95=num(w.get("p95_ms")),
        p99=num(w.get("p99_ms")), max=num(w.get("max_ms")), failed=w.get("failed", "?"),
        open=f"{w.get('open_at_start', '?')}/{w.get('open_at_end', '?')}",
        missed=w.get("missed_slots", "?"), connects=w.get("connects", "?"),
        cpu=cpu, busy=busy, steal=steal, other=other, irq=irq, total=total,
        batch=(bs / bc) if bs is not None and bc else None,
        txn_s=(wc / secs) if wc is not None else None,
        txn_ms=(ws / wc * 1000) if ws is not None and wc else None,
        stored_s=(stored / secs) if stored is not None else None,
        us_per_msg=(server / acks * 1e6) if acks else None,
        top_other=", ".join(f"{c} {v / secs * 100:.0f} %" for c, v in top_other if v / secs >= 0.01),
    ))

def f(v, fmt="{:.0f}", na="n/a"):
    return na if v is None else fmt.format(v)

def pct(v, secs):
    return "n/a" if v is None else f"{v / secs * 100:.0f} %"

print(f"## A/B: chat scenario, {machine['date']}\n")
print(f"- machine: `nproc` = {machine['nproc']}, {machine['cpu']}, {machine['mem']} RAM, kernel {machine['kernel']}")
print(f"- services: MariaDB {machine['mariadb']}, Redis {machine['redis']}; {machine['rustc']}; load average at start {machine['loadavg']}")
print(f"- old: `{machine['old']}`")
print(f"- new: `{machine['new']}`")
print(f"- generator (both sides): {machine['generator']}")
print(f"- command: `{machine['command']}`")
print(f"- results: `{out}`\n")

print("Measured window only (after ramp-up and warm-up). Latency in ms, exact percentiles of every ack in the window.\n")
print("| run | side | pace | offered | acked msgs/s | ack p50 | p95 | p99 | max | failed | sockets start/end | stored/s (nodes) | avg batch | DB txn/s | DB txn mean ms |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    pace = f"{r['pace']} ms wait" if r["kind"] == "wait" else f"every {r['pace']} ms"
    if r["target"] == "-":
        offered = "closed loop"
    else:
        o = int(r["users"]) * 1000 / int(r["pace"])
        offered = f"{o:.0f}/s" + ("" if r["rate"] and r["rate"] >= 0.97 * o else " (not reached)")
    side = r["side"] + (" (perf)" if r["profiled"] else "") + ("" if r["rc"] == "0" else f" (exit {r['rc']})")
    print(f"| {r['name']} | {side} | {r['users']} users, {pace} | {offered} | {f(r['rate'])} | "
          f"{f(r['p50'], '{:.1f}')} | {f(r['p95'], '{:.1f}')} | {f(r['p99'], '{:.1f}')} | {f(r['max'], '{:.0f}')} | "
          f"{r['failed']} | {r['open']} | {f(r['stored_s'])} | {f(r['batch'], '{:.2f}')} | {f(r['txn_s'])} | {f(r['txn_ms'], '{:.2f}')} |")

print("\nCPU in the window, % of one core (both cores = 200 %), from /proc/<pid>/stat (utime+stime) and /proc/stat. "
      "'irq' is hard and soft interrupt time (loopback networking), charged to no process; 'other' is the rest of "
      "the busy time: processes not listed, including other users' builds and tests, in this PID namespace or not. "
      "It is derived from two differently sampled counters (tick-sampled /proc/stat against precise per-process "
      "times), so it is approximate: it has come out 10 % of a core off, even negative. "
      "Server CPU per message: nodes + mariadbd + redis over acked messages.\n")
print("| run | side | node A | node B | mariadbd | redis | loadtest | irq | other | busy | steal | server CPU µs/msg |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    c, s = r["cpu"], r["secs"]
    print(f"| {r['name']} | {r['side']} | {pct(c['node_a'], s)} | {pct(c['node_b'], s)} | {pct(c['mariadbd'], s)} | "
          f"{pct(c['redis'], s)} | {pct(c['loadtest'], s)} | {pct(r['irq'], s)} | {pct(r['other'], s)} | "
          f"{pct(r['busy'], s)} | {pct(r['steal'], s)} | {f(r['us_per_msg'])} |")
print("\nLargest other processes seen in each window (by name; processes in other PID namespaces, and those that "
      "exited inside the window, are not seen):\n")
for r in runs:
    extra = [f"perf record {pct(r['cpu']['perf'], r['secs'])}"] if r["cpu"].get("perf") is not None else []
    print(f"- {r['name']}: {', '.join(extra + ([r['top_other']] if r['top_other'] else [])) or 'none above 1 %'}")
idle = [r["name"] for r in runs if r["kind"] == "wait" and r["busy"] / r["secs"] < 1.8]
if idle:
    print(f"\n**Not saturated:** the machine was under 180 % busy in {', '.join(idle)}: a closed loop of "
          "USERS at PACE cannot offer more than about USERS × 1000 / (pace + ack latency) msgs/s, and PACE "
          "stays >= 60 ms (the 20 frames/s limit), so raise USERS to find that side's ceiling.")
noisy = [r["name"] for r in runs if r["other"] / r["secs"] > 0.2]
if noisy:
    print(f"\n**Noisy:** other processes took more than 20 % of a core in {', '.join(noisy)}; "
          "compare those runs with care, or run again on a quiet machine with REPEAT=2 or more.")

configs = []
for r in runs:
    if r["config"] not in configs:
        configs.append(r["config"])
rows = []
for cfg in configs:
    def mean(side, key):
        v = [r[key] for r in runs if r["config"] == cfg and r["side"] == side and r[key] is not None]
        return sum(v) / len(v) if v else None
    def ratio(key):
        o, n = mean("old", key), mean("new", key)
        return f"{n / o:.2f}" if o and n is not None else "n/a"
    if mean("old", "rate") is None or mean("new", "rate") is None:
        continue
    rows.append(f"| {cfg} | {f(mean('old', 'rate'))} → {f(mean('new', 'rate'))} | **{ratio('rate')}** | "
                f"{ratio('p50')} | {ratio('p95')} | {ratio('p99')} | {ratio('us_per_msg')} |")
if rows:
    print("\nnew / old (means over repeats):\n")
    print("| config | acked msgs/s old → new | msgs/s | ack p50 | p95 | p99 | server CPU per msg |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
EOF
log "done: $OUT/results.md"
