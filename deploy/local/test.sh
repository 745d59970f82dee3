#!/usr/bin/env bash
# Runs every test against the real MariaDB and Redis: unit and integration tests (each
# integration test starts its own nodes on a fresh database and Redis prefix), the
# browser end-to-end test in headless Chromium, and the Kubernetes manifest check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/chat-target}

deploy/local/ensure-services.sh --nginx --chromium --node

echo "== chat-common depends on no server crate (no actix, no diesel)"
if cargo tree --locked -p chat-common -e normal --prefix none | grep -Eq '^(actix|diesel|redis|mysql)'; then
  cargo tree --locked -p chat-common -e normal
  echo "chat-common must stay free of server crates" >&2
  exit 1
fi

echo "== one redis client: sessions, pub/sub and presence share the redis crate and pool"
if [ "$(grep -c '^name = "redis"$' Cargo.lock)" -ne 1 ]; then
  cargo tree --locked -i redis
  echo "more than one version of the redis crate is in Cargo.lock" >&2
  exit 1
fi

echo "== cargo test"
cargo test --workspace --locked

echo "== Kubernetes manifests"
deploy/k8s/validate.sh

echo "== browser end-to-end test"
cargo build --locked -p chat-node
(
  cd chat-node/e2e
  npm ci --no-audit --no-fund --loglevel=error
  CHAT_NODE_BIN="$CARGO_TARGET_DIR/debug/chat-node" node --test --test-concurrency=1 browser.test.mjs
)
