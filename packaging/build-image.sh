#!/usr/bin/env bash
# Builds the console's image (packaging/Dockerfile) on the engine at DOCKER_HOST, offline: the build
# context is the console's root file system (container/build-rootfs.sh), this machine's docker CLI and
# compose plugin, and the epsm-ops binary (target/release/epsm-ops, or $CONSOLE_BINARY).
#
#   packaging/build-image.sh [TAG]        # default epsm-ops:local
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tag=${1:-epsm-ops:local}
binary=${CONSOLE_BINARY:-$here/../target/release/epsm-ops}
[ -x "$binary" ] || { echo "no console binary at $binary (scripts/release.sh builds it)" >&2; exit 1; }
docker_cli=$(command -v docker) || { echo "no docker CLI on PATH" >&2; exit 1; }
compose=$(docker info --format '{{range .ClientInfo.Plugins}}{{if eq .Name "compose"}}{{.Path}}{{end}}{{end}}' 2>/dev/null || true)
[ -n "$compose" ] || { echo "no compose v2 plugin (docker compose) on this machine" >&2; exit 1; }

bash "$here/container/build-rootfs.sh"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# Hard links where the file system allows: the context holds a few hundred MB.
cp -l "$here/container/rootfs.tar" "$context/rootfs.tar" 2>/dev/null || cp "$here/container/rootfs.tar" "$context/rootfs.tar"
cp "$docker_cli" "$context/docker"
cp "$compose" "$context/docker-compose"
cp "$binary" "$context/epsm-ops"
docker build --quiet --tag "$tag" --file "$here/Dockerfile" "$context" >/dev/null
echo "[image] $tag: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')" >&2
