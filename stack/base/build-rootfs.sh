#!/usr/bin/env bash
# Builds stack/base/rootfs.tar: one Debian bookworm root file system holding every program the EPSM-like
# stack runs (PostgreSQL 15, Redis, Django + gunicorn, Celery, nginx). Each service image is
# `FROM scratch` + `ADD base/rootfs.tar /`, so `docker compose build --no-cache --pull` needs no registry.
# Skips the build when the tarball exists and this script has not changed since it was made.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/rootfs.tar"
stamp="$here/rootfs.tar.sha256"
want=$(sha256sum "$here/build-rootfs.sh" | cut -d' ' -f1)
if [ -s "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

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
# A tmpfs for the chroot halves the build time where /dev/shm is large enough.
tmp=$(mktemp -d /dev/shm/epsm-rootfs.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "[rootfs] mmdebstrap bookworm -> $out" >&2
TMPDIR="$tmp" mmdebstrap --variant=apt --format=tar --quiet \
  --aptopt='APT::Install-Recommends "false"' \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/no-main-cluster.conf"' \
  --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/* "$1"/usr/share/info/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  --customize-hook='rm -f "$1"/usr/lib/x86_64-linux-gnu/libLLVM* "$1"/usr/lib/x86_64-linux-gnu/libz3* "$1"/usr/lib/postgresql/15/lib/llvmjit*' \
  bookworm "$tmp/rootfs.tar"
mv "$tmp/rootfs.tar" "$out"
echo "$want" >"$stamp"
echo "[rootfs] $(du -h "$out" | cut -f1) written" >&2
