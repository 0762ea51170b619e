#!/usr/bin/env bash
# System packages the test suite uses, from Debian's archive. Idempotent; needs root (or sudo).
# docker.io, caddy and ansible are the runner's real engines; busybox-static is copied into the
# test image (no image can be pulled, so it is built FROM scratch); debootstrap makes the Debian root
# the coding-worker image is built on in tests. python3-jinja2 (Ansible's too) is what the PyPI stand-in
# serves the Python projects in tests and the demo (with python3-markupsafe, which it needs).
set -euo pipefail
packages=(util-linux passwd chromium redis-server docker.io caddy ansible busybox-static curl debootstrap pgbouncer python3-jinja2 python3-markupsafe)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# docker compose v2 (the deploy pipeline's releases) is not in Debian bookworm. Debian trixie's
# docker-compose package is: fetch it with a sources list of its own (trixie never becomes an apt
# source here) and unpack its CLI plugin where the docker CLI looks for plugins.
if ! docker compose version >/dev/null 2>&1; then
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo "deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} trixie main" > "$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq
  (cd "$work" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
  dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO install -D -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" /usr/libexec/docker/cli-plugins/docker-compose
  rm -rf "$work"
  docker compose version
fi
