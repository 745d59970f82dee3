#!/usr/bin/env bash
# Runs the fault suite (chat-node/tests/it/faults, ignored tests included if any)
# and prints the rows of the counts table in docs/reliability.md from the FAULT-COUNTS line
# each test prints, then one line per test with how many runs passed.
#
# Usage: deploy/local/reliability.sh [RUNS] [TEST FILTER]
#   RUNS         how many times to run the suite (default 1); the known gaps are races,
#                so a few runs tell how often each one loses a message
#   TEST FILTER  cargo test filter (default: faults)
# Needs MariaDB and Redis on 127.0.0.1 (deploy/local/ensure-services.sh starts them) and
# redis-server and mariadb-install-db on the PATH: the tests start private ones to break.
# Every run's full output is kept in .run/reliability-<run>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}

runs=${1:-1}
filter=${2:-faults}
mkdir -p .run
cargo test --locked -p chat-node --test it --no-run >/dev/null 2>&1 \
  || cargo test --locked -p chat-node --test it --no-run

status=0
lines=()
for run in $(seq 1 "$runs"); do
  log=".run/reliability-$run.log"
  echo "== run $run of $runs: cargo test -p chat-node --test it $filter -- --include-ignored --nocapture --test-threads=1" >&2
  if ! cargo test --locked -p chat-node --test it "$filter" -- \
      --include-ignored --nocapture --test-threads=1 >"$log" 2>&1; then
    status=1
  fi
  # The line may follow "test <name> ... " on the same line.
  while IFS= read -r line; do lines+=("$run $line"); done < <(grep -oE 'FAULT-COUNTS .*' "$log" || true)
  # With --nocapture a test's "ok" does not follow its name on one line: a test failed if
  # it is listed under the last "failures:", passed otherwise.
  failed=$(awk '/^failures:$/ {f = 1; next} f && /^    [a-z]/ {print $1} /^test result/ {f = 0}' "$log" | sort -u)
  while read -r name; do
    [ -n "$name" ] || continue
    if grep -qxF "$name" <<<"$failed"; then lines+=("$run RESULT $name FAILED"); else lines+=("$run RESULT $name ok"); fi
  done < <(grep -oE '^test [^ ]+::[^ ]+' "$log" | awk '{print $2}' | sort -u)
done

printf '%s\n' "${lines[@]}" | awk '
  # key=value pairs of a FAULT-COUNTS line into v[]
  function parse(    i, kv) {
    delete v; extra = ""
    for (i = 3; i <= NF; i++) {
      split($i, kv, "=")
      v[kv[1]] = kv[2]
      if (kv[1] !~ /^(name|sent|acked|live|recovered|lost|duplicated|peak_rss_kib|unacked|unavailable|resent|reconnects|relogins|closes|secs)$/)
        extra = extra (extra == "" ? "" : ", ") kv[1] "=" kv[2]
    }
  }
  $2 == "FAULT-COUNTS" {
    parse()
    if (!header++) {
      print "| run | test | sent | acked | delivered live | recovered by sync | lost | duplicated | peak RSS (MiB) | resent | reconnects | re-logins | closes | time (s) | also |"
      print "| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- | --: | --- |"
    }
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s |\n", \
      $1, v["name"], v["sent"], v["acked"], v["live"], v["recovered"], v["lost"], \
      v["duplicated"], v["peak_rss_kib"] / 1024, v["resent"], v["reconnects"], v["relogins"], \
      v["closes"], v["secs"], extra
    next
  }
  $2 == "RESULT" {
    runs[$3]++; if ($4 == "ok") passed[$3]++
  }
  END {
    print ""
    for (t in runs) printf "%s: passed %d of %d run(s)\n", t, passed[t], runs[t]
  }'
exit "$status"
