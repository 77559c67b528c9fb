#!/usr/bin/env bash
# Make sure the browser tests have a Chromium: Debian's package at /usr/bin/chromium (or the
# binary named by RT_CHROMIUM), installed with apt-get when missing, as tests/ensure_redis.sh
# does for redis-server. Playwright's own browser downloads are never used: the tests launch
# this binary (executable_path), so `playwright install` is not needed and must not be run.
set -euo pipefail
CHROMIUM="${RT_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ -n "${RT_CHROMIUM:-}" ]; then
  echo "RT_CHROMIUM=$RT_CHROMIUM is not an executable" >&2
  exit 1
fi
echo "No Chromium at $CHROMIUM; installing Debian's chromium package..."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "The chromium package is installed but $CHROMIUM is missing" >&2
  exit 1
fi
