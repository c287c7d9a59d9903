# Sourced, not run (by scripts/lib/common.sh, whose until_answers it uses): gives the calling script a
# Docker engine.
#   engine_ensure  - use the engine DOCKER_HOST (or the local socket) names when it answers; otherwise start
#                    a private dockerd with a throwaway data root and export DOCKER_HOST for it.
#   engine_stop    - stop the private engine (if this script started one) and delete its data root.
# Callers install `trap engine_stop EXIT` so the private engine never outlives them, even on failure.

ENGINE_STARTED_DIR=""

engine_answers() {
  timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

engine_ensure() {
  if engine_answers; then
    echo "[engine] using the engine at ${DOCKER_HOST:-unix:///var/run/docker.sock} ($(docker version --format '{{.Server.Version}}'))" >&2
    return 0
  fi
  # Short path: unix socket paths are limited to 108 bytes.
  local dir
  dir=$(mktemp -d /tmp/epsm-engine.XXXXXX)
  ENGINE_STARTED_DIR=$dir
  echo "[engine] no engine answers; starting a private dockerd in $dir" >&2
  # The pinned address pool keeps compose networks out of 192.168.x, which this network must not touch.
  dockerd \
    --host "unix://$dir/docker.sock" \
    --data-root "$dir/data" \
    --exec-root "$dir/exec" \
    --pidfile "$dir/dockerd.pid" \
    --default-address-pool base=172.31.128.0/17,size=24 \
    --bip 172.31.127.1/24 \
    >"$dir/dockerd.log" 2>&1 &
  export DOCKER_HOST="unix://$dir/docker.sock"
  until_answers engine "the private engine ($DOCKER_HOST)" engine_answers "$dir/dockerd.log"
}

engine_stop() {
  local dir=$ENGINE_STARTED_DIR
  [ -n "$dir" ] || return 0
  ENGINE_STARTED_DIR=""
  if [ -f "$dir/dockerd.pid" ]; then
    local pid
    pid=$(cat "$dir/dockerd.pid")
    # Containers first, so their mounts are gone before the data root is removed.
    DOCKER_HOST="unix://$dir/docker.sock" timeout 30 docker ps -q 2>/dev/null |
      xargs -r env DOCKER_HOST="unix://$dir/docker.sock" timeout 30 docker kill >/dev/null 2>&1 || true
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # What the run left on disk, for a run that ends short of it.
  echo "[engine] data root at the end: $(du -sh "$dir/data" 2>/dev/null | cut -f1)" >&2
  # Overlay mounts may linger for a moment after dockerd exits.
  grep -o "$dir[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
  echo "[engine] private engine stopped and removed" >&2
}
