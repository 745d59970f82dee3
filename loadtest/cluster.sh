# Sourced by loadtest/connections.sh, login.sh, rooms.sh and storm.sh (not run on its
# own): a fresh cluster of release nodes with its own database, Redis prefix and random
# session key, and the cleanup that stops the nodes and drops both. Every simulated user
# comes from 127.0.0.1, so the per-address registration and failed-login limits are
# lifted (older nodes ignore those variables).
#
#   cluster_init <name>           sets TAG, DB, PREFIX, KEY, OUT (if unset); traps EXIT
#   cluster_binaries              sets CHAT_NODE_BIN and LOADTEST_BIN, building what is
#                                 not given (both in one cargo run, so their shared
#                                 dependencies are built once), the node copied to OUT
#   NODE_ENV=(VAR=value ...)      extra environment for every node (optional)
#   start_node <port> <id> <cost> starts one node (bcrypt cost; its /metrics on port + 10,
#                                 as in bench.sh), waits for /readyz; appends its pid to
#                                 NODE_PIDS
#   node_cpu_ticks <pid>          utime + stime of a process, in clock ticks
#
# Needs MariaDB and Redis on localhost. CHAT_NODE_BIN picks the node binary (default:
# this tree's release build, built by the caller).

NODE_PIDS=()
NODE_ENV=()
GEN_PIDS=()

cluster_init() {
  TAG="$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
  DB="chat_$1_$TAG"
  PREFIX_REDIS="$1_$TAG"
  KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" # 64 hex characters
  OUT="${OUT:-/tmp/chat-$1-$TAG}"
  mkdir -p "$OUT"
  trap cluster_cleanup EXIT
  # Killed (timeout, Ctrl-C): exit, so that the EXIT trap stops the nodes and drops both.
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

cluster_binaries() {
  local build=()
  [ -n "${CHAT_NODE_BIN:-}" ] || build+=(-p chat-node)
  [ -n "${LOADTEST_BIN:-}" ] || build+=(-p loadtest)
  if [ "${#build[@]}" -gt 0 ]; then cargo build --release "${build[@]}"; fi
  if [ -z "${CHAT_NODE_BIN:-}" ]; then
    # A copy: a rebuild in the shared target dir must not change the binary mid-run.
    cp "$CARGO_TARGET_DIR/release/chat-node" "$OUT/chat-node"
    CHAT_NODE_BIN="$OUT/chat-node"
  fi
  LOADTEST_BIN="${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/loadtest}"
}

cluster_stop() {
  for pid in "${GEN_PIDS[@]}" "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${GEN_PIDS[@]}" "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  GEN_PIDS=()
  NODE_PIDS=()
}

cluster_cleanup() {
  cluster_stop
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$DB\`" || true
  redis-cli --scan --pattern "$PREFIX_REDIS:*" | xargs -r redis-cli del >/dev/null || true
}

start_node() { # port id bcrypt-cost
  # Without RUST_BACKTRACE, as in the images: with it set (a developer's shell often has
  # it), every error made inside actix-session captures a backtrace, which a storm of
  # refused upgrades makes a visible share of a node's CPU.
  env -u RUST_BACKTRACE CHAT_LISTEN="127.0.0.1:$1" \
    CHAT_METRICS_LISTEN="127.0.0.1:$(( $1 + 10 ))" \
    DATABASE_URL="mysql://root@127.0.0.1:3306/$DB" \
    REDIS_URL="redis://127.0.0.1:6379" \
    CHAT_REDIS_PREFIX="$PREFIX_REDIS" \
    CHAT_SESSION_KEY="$KEY" \
    CHAT_BCRYPT_COST="$3" \
    CHAT_NODE_ID="$2" \
    CHAT_DEV=true \
    CHAT_REGISTER_MAX_PER_ADDRESS=1000000 \
    CHAT_LOGIN_MAX_FAILURES_PER_ADDRESS=1000000 \
    RUST_LOG=warn \
    "${NODE_ENV[@]}" \
    "${CHAT_NODE_BIN:-$CARGO_TARGET_DIR/release/chat-node}" >"$OUT/$2.log" 2>&1 &
  NODE_PIDS+=("$!")
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    kill -0 "$!" 2>/dev/null || break
    sleep 0.1
  done
  echo "node $2 on :$1 not ready; its log:" >&2
  tail -20 "$OUT/$2.log" >&2
  return 1
}

node_cpu_ticks() { # pid: utime + stime (fields 14 and 15; the name in field 2 has no spaces here)
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# The chat_ws_connections gauge of a node, or empty when it does not answer.
node_sockets() { # port (the public one; /metrics is on port + 10)
  curl -fs --max-time 5 "http://127.0.0.1:$(( $1 + 10 ))/metrics" 2>/dev/null \
    | awk '$1 == "chat_ws_connections" { print int($2) }'
}
