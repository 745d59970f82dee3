#!/usr/bin/env bash
# Makes sure what the project needs on this machine is there and running: MariaDB and
# Redis answering on 127.0.0.1 (started, or installed with apt-get on a fresh Debian),
# and with --nginx, --chromium or --node the tools the local cluster and the browser test
# use. Idempotent: a machine that has everything is left as it is.
set -euo pipefail

want_nginx=0 want_chromium=0 want_node=0
for arg in "$@"; do
  case "$arg" in
    --nginx) want_nginx=1 ;;
    --chromium) want_chromium=1 ;;
    --node) want_node=1 ;;
    *) echo "usage: $0 [--nginx] [--chromium] [--node]" >&2; exit 2 ;;
  esac
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

wait_for() { # name, seconds, command...
  local name=$1 secs=$2
  shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$name did not come up within ${secs}s" >&2
  return 1
}

mariadb_tcp() { mariadb -uroot -h127.0.0.1 -P3306 -e 'SELECT 1'; }
if ! mariadb_tcp >/dev/null 2>&1; then
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "== installing MariaDB"
    apt_install mariadb-server mariadb-client
  fi
  echo "== starting MariaDB"
  $SUDO mkdir -p /run/mysqld
  $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for "MariaDB socket" 60 $SUDO mariadb -uroot -e 'SELECT 1'
  if ! mariadb_tcp >/dev/null 2>&1; then
    # A fresh Debian install lets root in through the socket only; tests and nodes
    # connect over TCP as root with an empty password, as on CI.
    $SUDO mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
  fi
  wait_for "MariaDB on 127.0.0.1:3306" 30 mariadb_tcp
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if ! redis_up >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null; then
    echo "== installing Redis"
    apt_install redis-server
  fi
  echo "== starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for "Redis on 127.0.0.1:6379" 30 redis_up
fi

if [ "$want_nginx" -eq 1 ] && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx"
  apt_install nginx-light || apt_install nginx
fi

if [ "$want_node" -eq 1 ] && ! command -v npm >/dev/null; then
  echo "== installing Node.js"
  apt_install nodejs npm
fi

if [ "$want_chromium" -eq 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "== installing Chromium"
  apt_install chromium fonts-dejavu-core
fi
