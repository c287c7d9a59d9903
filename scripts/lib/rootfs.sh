# rootfs_build OUT LABEL SCRIPT PACKAGE... [-- MMDEBSTRAP-ARG...]: a Debian bookworm root file system
# as the tarball OUT (an image's `ADD rootfs.tar /`, so building the image needs no registry), with
# the packages and no recommends, without docs, manuals, locales or apt's lists. Skipped when OUT
# exists and neither SCRIPT (the caller, which names the packages) nor this file changed since.
rootfs_build() {
  local out=$1 label=$2 script=$3 packages=() extra=() tmp want
  shift 3
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do packages+=("$1"); shift; done
  [ $# -gt 0 ] && shift && extra=("$@")
  want=$(cat "$script" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
  if [ -s "$out" ] && [ "$(cat "$out.sha256" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  # A tmpfs for the chroot halves the build time where /dev/shm is large enough.
  tmp=$(mktemp -d /dev/shm/epsm-rootfs.XXXXXX 2>/dev/null || mktemp -d)
  echo "[$label] mmdebstrap bookworm -> $out" >&2
  if ! TMPDIR="$tmp" mmdebstrap --variant=apt --format=tar --quiet \
    --aptopt='APT::Install-Recommends "false"' \
    --include="$(IFS=,; echo "${packages[*]}")" \
    "${extra[@]}" \
    --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/* "$1"/usr/share/info/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$tmp/rootfs.tar"; then
    rm -rf "$tmp"
    return 1
  fi
  mv "$tmp/rootfs.tar" "$out"
  rm -rf "$tmp"
  echo "$want" >"$out.sha256"
  echo "[$label] $(du -h "$out" | cut -f1) written" >&2
}
