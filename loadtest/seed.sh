#!/usr/bin/env bash
# Writes USERS users (and optionally PAIRS conversations of MESSAGES messages each)
# straight into a chat database, so that big runs start in seconds:
#
#   NODE=http://127.0.0.1:9281 loadtest/seed.sh DATABASE USERS [PAIRS MESSAGES]
#
# Users are <PREFIX>1 .. <PREFIX>USERS (PREFIX default `ls`), password `password123`:
# the script registers <PREFIX>proto through NODE's HTTP API (so the hash is a real
# bcrypt hash at that node's CHAT_BCRYPT_COST) and copies its hash to every seeded user.
# Conversation p (1..PAIRS) is between <PREFIX>(2p-1) and <PREFIX>(2p); its messages
# alternate senders, one second apart, ending now. The loadtest scenarios take these
# users with LOADTEST_SEEDED=<PREFIX>.
#
# NODE must be a node of that database (it created the schema). Existing users of the
# same names are left as they are (INSERT IGNORE). Env: NODE (required), PREFIX,
# MARIADB (client command, default `mariadb -uroot -h127.0.0.1`).
set -euo pipefail

usage() { echo "usage: NODE=http://127.0.0.1:<port> $0 DATABASE USERS [PAIRS MESSAGES]" >&2; exit 2; }
[ "$#" -eq 2 ] || [ "$#" -eq 4 ] || usage
DB="$1" USERS="$2" PAIRS="${3:-0}" MESSAGES="${4:-0}"
PREFIX="${PREFIX:-ls}"
NODE="${NODE:-}"
read -r -a MARIADB <<<"${MARIADB:-mariadb -uroot -h127.0.0.1}"

[[ "$DB" =~ ^[A-Za-z0-9_]+$ ]] || { echo "DATABASE: letters, digits and _ only" >&2; exit 2; }
for v in USERS PAIRS MESSAGES; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$v is a whole number" >&2; exit 2; }
done
[ "$USERS" -ge 1 ] || { echo "USERS >= 1" >&2; exit 2; }
[ $(( 2 * PAIRS )) -le "$USERS" ] || { echo "PAIRS takes two users each: 2 * PAIRS <= USERS" >&2; exit 2; }
# The same rule as LOADTEST_SEEDED: every <PREFIX><n> is a valid username (3-32 chars).
[[ "$PREFIX" =~ ^[A-Za-z0-9_.-]{2,24}$ ]] || { echo "PREFIX: 2 to 24 of A-Z a-z 0-9 _ . -" >&2; exit 2; }
[[ "$NODE" =~ ^http://127\.0\.0\.1(:[0-9]+)?/?$ ]] || { echo "NODE=http://127.0.0.1:<port> of a node on $DB" >&2; exit 2; }
NODE="${NODE%/}"

sql() { "${MARIADB[@]}" -N "$DB" -e "$1"; }
started=$(date +%s.%N)
elapsed() { awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d "{\"username\":\"${PREFIX}proto\",\"password\":\"password123\"}" "$NODE/api/register")
case "$status" in
  201|409) ;;
  *) echo "registering ${PREFIX}proto at $NODE: HTTP $status" >&2; exit 1 ;;
esac
hash_count=$(sql "SELECT COUNT(*) FROM users WHERE username = '${PREFIX}proto'")
[ "$hash_count" = 1 ] || { echo "${PREFIX}proto is not in $DB: is $NODE a node of $DB?" >&2; exit 1; }

sql "SET @h = (SELECT password_hash FROM users WHERE username = '${PREFIX}proto');
     INSERT IGNORE INTO users (username, password_hash)
       SELECT CONCAT('$PREFIX', seq), @h FROM seq_1_to_$USERS"
echo "users: ${PREFIX}1..${PREFIX}$USERS in $(elapsed) s"

if [ "$PAIRS" -gt 0 ]; then
  first=$(sql "SELECT COALESCE(MAX(id), 0) FROM channels")
  sql "INSERT IGNORE INTO channels (user_low, user_high)
         SELECT LEAST(a.id, b.id), GREATEST(a.id, b.id) FROM seq_1_to_$PAIRS s
         JOIN users a ON a.username = CONCAT('$PREFIX', 2 * s.seq - 1)
         JOIN users b ON b.username = CONCAT('$PREFIX', 2 * s.seq)"
  echo "conversations: $PAIRS in $(elapsed) s"
  if [ "$MESSAGES" -gt 0 ]; then
    # recipient_id exists from the sync-index migration on.
    if [ -n "$(sql "SHOW COLUMNS FROM messages LIKE 'recipient_id'")" ]; then
      cols="channel_id, sender_id, recipient_id, client_id, body, sent_at"
      vals="c.id, IF(m.seq % 2, c.user_low, c.user_high), IF(m.seq % 2, c.user_high, c.user_low),"
    else
      cols="channel_id, sender_id, client_id, body, sent_at"
      vals="c.id, IF(m.seq % 2, c.user_low, c.user_high),"
    fi
    vals+=" NULL, CONCAT('seeded message ', m.seq), NOW(6) - INTERVAL ($MESSAGES - m.seq) SECOND"
    sql "INSERT INTO messages ($cols) SELECT $vals
           FROM channels c JOIN seq_1_to_$MESSAGES m WHERE c.id > $first
           ORDER BY c.id, m.seq;
         ANALYZE TABLE messages" >/dev/null
    echo "messages: $MESSAGES in each of $PAIRS conversations in $(elapsed) s"
  fi
fi
sql "ANALYZE TABLE users, channels" >/dev/null
echo "seeded $DB: $(sql "SELECT COUNT(*) FROM users") users in all, $(elapsed) s"
