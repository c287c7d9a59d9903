#!/bin/sh
# Redis as EPSM runs it: cache and Celery broker, password required when REDIS_PASSWORD is set.
set -eu
set -- --bind 0.0.0.0 --protected-mode no --dir /data --appendonly no --save ""
if [ -n "${REDIS_PASSWORD:-}" ]; then
  # Through a config file on stdin, so the password is not in the process list.
  printf 'requirepass "%s"\n' "$REDIS_PASSWORD" | exec redis-server - "$@"
fi
exec redis-server "$@"
