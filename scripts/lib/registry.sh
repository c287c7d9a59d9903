# Sourced, not run (by scripts/lib/common.sh, whose until_answers it uses): the loopback registry the
# EPSM-like stack's images are built FROM.
#   registry_ensure - use the registry answering at $REGISTRY_ADDR, or start a private one (Debian's
#                     docker-registry, storage in a throwaway directory) for as long as the caller runs.
#   registry_stop   - stop the private registry (if this script started one) and delete its storage.
#   base_publish    - import stack/base/rootfs.tar as $BASE_IMAGE and push it, unless the registry
#                     already holds this very rootfs (a tag named after its build stamp).
#
# Why a registry: EPSM's Dockerfiles start FROM images in a registry and the guide builds with
# `--no-cache --pull`. The stack used to `ADD base/rootfs.tar /` in every Dockerfile instead; the
# engine then unpacked 340 MB per image per build, and dockerd 20.10's BuildKit never gave that disk
# back (about 1 GB per build, 50 GB over the suite). FROM a pulled image, a build only adds its COPY
# layers: about a second instead of thirty, and no disk growth.

# Docker treats registries on localhost as plain-HTTP ones without configuration.
REGISTRY_ADDR=127.0.0.1:5055
BASE_IMAGE=localhost:5055/epsm/base
REGISTRY_STARTED_DIR=""

registry_answers() {
  curl -fsS --max-time 5 "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1
}

registry_ensure() {
  if registry_answers; then
    echo "[registry] using the registry at $REGISTRY_ADDR" >&2
    return 0
  fi
  local dir
  dir=$(mktemp -d /tmp/epsm-registry.XXXXXX)
  REGISTRY_STARTED_DIR=$dir
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $REGISTRY_ADDR
YAML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  until_answers registry "the private registry at $REGISTRY_ADDR" registry_answers "$dir/registry.log"
}

registry_stop() {
  local dir=$REGISTRY_STARTED_DIR
  [ -n "$dir" ] || return 0
  REGISTRY_STARTED_DIR=""
  [ -f "$dir/registry.pid" ] && kill -TERM "$(cat "$dir/registry.pid")" 2>/dev/null || true
  rm -rf "$dir"
}

base_publish() {
  local rootfs="$ROOT/stack/base/rootfs.tar"
  local stamp
  stamp=$(cut -c1-16 "$ROOT/stack/base/rootfs.tar.sha256")
  if curl -fs --max-time 5 -o /dev/null \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_ADDR/v2/epsm/base/manifests/rootfs-$stamp"; then
    echo "[registry] $BASE_IMAGE:bookworm is this rootfs already" >&2
    return 0
  fi
  echo "[registry] publishing $rootfs as $BASE_IMAGE:bookworm" >&2
  docker import "$rootfs" "$BASE_IMAGE:bookworm" >/dev/null
  docker tag "$BASE_IMAGE:bookworm" "$BASE_IMAGE:rootfs-$stamp"
  docker push -q "$BASE_IMAGE:bookworm" >/dev/null
  docker push -q "$BASE_IMAGE:rootfs-$stamp" >/dev/null
  # The engine keeps no copy of its own: every build pulls it, as EPSM's builds pull theirs.
  docker rmi "$BASE_IMAGE:bookworm" "$BASE_IMAGE:rootfs-$stamp" >/dev/null
}
