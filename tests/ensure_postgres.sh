#!/usr/bin/env bash
# Make sure the PostgreSQL tests (tests/test_outbox_relays.py) have a server: one on
# 127.0.0.1:${RT_PG_PORT:-5432} that lets the user postgres in without a password, as the
# project's machines run. When none answers there, install Debian's postgresql when missing and
# start a private cluster (trust authentication, loopback only) in a temporary directory; it
# keeps running for later runs and is never the package's system service.
set -euo pipefail
PORT="${RT_PG_PORT:-5432}"
answers() { pg_isready -q -h 127.0.0.1 -p "$PORT" -U postgres 2>/dev/null; }
if command -v pg_isready >/dev/null && answers; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "Installing postgresql (Debian package)..."
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
DATA="${TMPDIR:-/tmp}/rt-postgres-$PORT"
AS="$SUDO"; [ "$(id -u)" = 0 ] && AS="runuser -u postgres --"  # initdb refuses to run as root
if [ ! -f "$DATA/PG_VERSION" ]; then
  $SUDO mkdir -p "$DATA" && $SUDO chown postgres "$DATA"
  $AS "$BIN/initdb" -D "$DATA" -U postgres -A trust >/dev/null
fi
echo "Starting a private PostgreSQL on 127.0.0.1:$PORT ($DATA)"
$AS "$BIN/pg_ctl" -D "$DATA" -l "$DATA/log" -w \
  -o "-h 127.0.0.1 -p $PORT -k $DATA" start >/dev/null
answers || { echo "PostgreSQL did not start: see $DATA/log" >&2; exit 1; }
