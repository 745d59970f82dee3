#!/usr/bin/env bash
# Installs Debian's chromium when it is missing; the e2e test drives it through
# playwright-core (no browser download of its own).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
test -x /usr/bin/chromium
