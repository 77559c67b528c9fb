#!/usr/bin/env bash
# Make sure the reverse-proxy tests (tests/test_nginx.py) have an nginx: Debian's package at
# /usr/sbin/nginx (or the binary named by RT_NGINX), installed with apt-get when missing, as
# tests/ensure_redis.sh does for redis-server. Its system service is never started: the tests
# run nginx themselves, in the foreground on a free loopback port, with a configuration, pid
# file and logs of their own, and stop it by pid.
set -euo pipefail
exec "$(dirname "$0")/ensure_binary.sh" /usr/sbin/nginx RT_NGINX nginx
