#!/usr/bin/env bash
# System packages the test suite uses, from Debian's archive. Idempotent; needs root (or sudo).
set -euo pipefail
packages=(util-linux passwd chromium redis-server)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
