#!/usr/bin/env bash
# Install Debian packages for `make setup` where apt-get is usable (as root, or through passwordless sudo); elsewhere
# print the exact command and carry on, so set-up never stops on a machine without apt-get.
# Usage: scripts/apt-install.sh TARGET "WHAT TO SAY WHEN IT CANNOT" PACKAGE...
set -u
target=$1; hint=$2; shift 2
export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -q && apt-get install -y -q "$@" </dev/null; } \
    || echo "$target: apt-get failed; install them with: apt-get install -y $*"
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  { sudo DEBIAN_FRONTEND=noninteractive apt-get update -q && \
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null; } \
    || echo "$target: apt-get failed; install them with: sudo apt-get install -y $*"
else
  echo "$target: cannot install Debian packages here; install them with: sudo apt-get install -y $* $hint"
fi
exit 0
