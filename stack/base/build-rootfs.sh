#!/usr/bin/env bash
# Builds stack/base/rootfs.tar: one Debian bookworm root file system holding every program the EPSM-like
# stack runs (PostgreSQL 15, Redis, Django + gunicorn, Celery, nginx). Each service image is
# `FROM scratch` + `ADD base/rootfs.tar /`, so `docker compose build --no-cache --pull` needs no registry.
# Skips the build when the tarball exists and this script has not changed since it was made.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/lib/rootfs.sh"

packages=(
  postgresql-15 postgresql-client-15
  redis-server redis-tools
  nginx-light
  python3 python-is-python3 python3-django python3-psycopg2 python3-redis
  python3-celery celery gunicorn
  python3-gdbm   # shelve then writes /app/celerybeat-schedule itself, the file EPSM's healthcheck tests
  libjs-jquery   # Django admin's static files link to it; collectstatic fails without it
  curl procps
)
rootfs_build "$here/rootfs.tar" rootfs "$here/build-rootfs.sh" "${packages[@]}" -- \
  --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
  --customize-hook='rm -f "$1"/usr/lib/x86_64-linux-gnu/libLLVM* "$1"/usr/lib/x86_64-linux-gnu/libz3* "$1"/usr/lib/postgresql/15/lib/llvmjit*'
