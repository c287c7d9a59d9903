#!/bin/sh
# The backend container's start: gunicorn serving the Django API on 8000.
set -eu
if [ "${EPSM_FAILURE:-}" = "crash" ]; then
  echo "backend: EPSM_FAILURE=crash - exiting at start on purpose" >&2
  exit 3
fi
exec gunicorn config.wsgi:application --bind 0.0.0.0:8000 --workers 2 --timeout 30 \
  --access-logfile - --error-logfile -
