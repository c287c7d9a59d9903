#!/usr/bin/env bash
# Builds packaging/container/rootfs.tar: the Debian bookworm root file system of the console's image,
# with what the console runs beside itself: git and ssh (a deploy's fetch), rclone (the off-site
# copy), CA certificates, and the libraries the binary links (xmlsec1 with OpenSSL, libxml2, libxslt).
# The docker CLI and its compose plugin come from the build machine (packaging/build-image.sh), as the
# versions the console is tested with. Skips the build when the tarball exists and this script has
# not changed since it was made.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/lib/rootfs.sh"

packages=(
  ca-certificates tzdata
  git openssh-client
  rclone
  libxmlsec1-openssl libxml2 libxslt1.1 libssl3
)
rootfs_build "$here/rootfs.tar" "console rootfs" "$here/build-rootfs.sh" "${packages[@]}" -- \
  --customize-hook='install -d -m 0700 "$1"/var/lib/epsm-ops'
