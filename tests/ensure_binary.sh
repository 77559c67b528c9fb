#!/usr/bin/env bash
# ensure_binary.sh PATH VARIABLE PACKAGE: make sure the executable PATH (or the one the
# environment variable VARIABLE names, which must then exist) is there, else install Debian's
# PACKAGE with apt-get. No service the package brings is started: while apt-get runs, a
# policy-rc.d (Debian's mechanism) refuses every service start, unless the machine already
# has one.
set -euo pipefail
DEFAULT="$1" VARIABLE="$2" PACKAGE="$3"
BINARY="${!VARIABLE:-$DEFAULT}"
if [ -x "$BINARY" ]; then
  exit 0
fi
if [ -n "${!VARIABLE:-}" ]; then
  echo "$VARIABLE=$BINARY is not an executable" >&2
  exit 1
fi
echo "No $PACKAGE at $BINARY; installing Debian's $PACKAGE package..."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$PACKAGE" >/dev/null
if [ ! -x "$BINARY" ]; then
  echo "The $PACKAGE package is installed but $BINARY is missing" >&2
  exit 1
fi
