#!/usr/bin/env bash
# Make sure TypeScript's `tsc` is at .tools/tsc/node_modules/.bin/tsc: `make lint` and
# `make test` type-check the JS client with it (`tsc -p tsconfig.json`: --noEmit --checkJs
# --strict over realtime/static/realtime/realtime.js and its JSDoc types). TypeScript is a tool,
# not a dependency of the project: installed from the npm registry into .tools/tsc when
# missing (and Node.js with apt-get, as tests/ensure_redis.sh does for redis-server). The
# client itself has no build step: Django serves the file as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
TSC=.tools/tsc/node_modules/.bin/tsc
if [ ! -x "$TSC" ]; then
  if ! command -v npm >/dev/null; then
    echo "No npm; installing Debian's nodejs and npm packages..."
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  npm install --silent --no-audit --no-fund --prefix .tools/tsc typescript@5
fi
