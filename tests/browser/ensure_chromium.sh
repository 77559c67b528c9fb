#!/usr/bin/env bash
# Make sure the browser tests have a Chromium: Debian's package at /usr/bin/chromium (or the
# binary named by RT_CHROMIUM), installed with apt-get when missing, as tests/ensure_redis.sh
# does for redis-server. Playwright's own browser downloads are never used: the tests launch
# this binary (executable_path), so `playwright install` is not needed and must not be run.
set -euo pipefail
exec "$(dirname "$0")/../ensure_binary.sh" /usr/bin/chromium RT_CHROMIUM chromium
