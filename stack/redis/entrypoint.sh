#!/bin/sh
# Redis as EPSM runs it: cache and Celery broker, password required when REDIS_PASSWORD is set.
set -eu
set -- --bind 0.0.0.0 --protected-mode no --dir /data --appendonly no --save ""
if [ -n "${REDIS_PASSWORD:-}" ]; then
  # Through a config file only its owner reads, so the password is not in the process list; and
  # redis-server itself is PID 1 (exec, no pipe), so it hears `docker stop`'s SIGTERM at once.
  conf=/tmp/redis-password.conf
  (umask 077 && printf 'requirepass "%s"\n' "$REDIS_PASSWORD" > "$conf")
  exec redis-server "$conf" "$@"
fi
exec redis-server "$@"
