#!/usr/bin/env bash
# System packages the test suite uses, from Debian's archive. Idempotent; needs root (or sudo).
# docker.io, caddy and ansible are the runner's real engines; busybox-static is copied into the
# test image (no image can be pulled, so it is built FROM scratch); debootstrap makes the Debian root
# the coding-worker image is built on in tests.
set -euo pipefail
packages=(util-linux passwd chromium redis-server docker.io caddy ansible busybox-static curl debootstrap)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
