#!/usr/bin/env bash
# Make sure the test suite can have a Redis: REDIS_URL if set, else 127.0.0.1:6379 if it
# answers, else the redis-server binary (installed from Debian's packages when missing), which
# tests/conftest.py starts privately on a free port.
set -euo pipefail
answers() {
  python3 - "$1" <<'PY'
import socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
try:
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
if [ -n "${REDIS_URL:-}" ]; then
  answers "$REDIS_URL" || { echo "REDIS_URL=$REDIS_URL does not answer PING" >&2; exit 1; }
fi
# The binary is needed in any case: the Redis-restart test runs a private server it can stop,
# and the Redis Cluster tests start three and join them with redis-cli (Debian's redis-server
# depends on redis-tools, which has it).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "Installing redis-server (Debian package)..."
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if [ -z "${REDIS_URL:-}" ] && ! answers redis://127.0.0.1:6379/0; then
  echo "No Redis answers on 127.0.0.1:6379: the tests will start a private one on a free port."
fi
