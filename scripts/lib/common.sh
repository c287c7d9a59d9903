# Sourced by the project's commands: repository root, tool paths, a step banner.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# wasm-opt from npm (Debian's binaryen breaks the wasm); cargo-installed tools.
export PATH="$ROOT/.tools/binaryen/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export COMPOSE_BAKE=false
# step WHAT: a heading in the run's output, with the disk left (a full disk ends a run mid-link).
step() {
  printf '\n\033[1;32m==> %s\033[0m  (%s free)\n' "$*" "$(df -h --output=avail . 2>/dev/null | tail -1 | tr -d ' ')" >&2
}

# until_answers TAG WHAT CHECK LOG: waits up to 20 s for the daemon just started in the background
# until CHECK (a command) succeeds; says it is ready, or shows the end of its LOG and fails.
until_answers() {
  local tag=$1 what=$2 check=$3 log=$4 i
  for i in $(seq 1 100); do
    "$check" && { echo "[$tag] $what ready" >&2; return 0; }
    sleep 0.2
  done
  echo "[$tag] $what did not start; its log:" >&2
  tail -20 "$log" >&2
  return 1
}

# build_release: the release artifact, target/release/epsm-ops, one binary that carries its site. The
# site first (release wasm; brotli and gzip copies beside each file), then the server, which embeds
# what target/site holds when it compiles (cargo-leptos would build the two side by side).
build_release() {
  step "release build: the site (precompressed)"
  cargo leptos build --release --precompress --frontend-only >&2
  step "release build: the server, the site embedded"
  cargo leptos build --release --server-only >&2
}

# What every command needs before it builds anything: the toolchain, a Docker engine and a loopback
# registry (private, and stopped at exit, when none answers) and the stack's base image in it.
prepare() {
  source "$ROOT/scripts/lib/engine.sh"
  source "$ROOT/scripts/lib/registry.sh"
  step "toolchain"
  bash "$ROOT/scripts/setup.sh"
  trap 'engine_stop; registry_stop' EXIT
  step "docker engine"
  engine_ensure
  step "stack base image (rootfs, published to the loopback registry)"
  bash "$ROOT/stack/base/build-rootfs.sh"
  registry_ensure
  base_publish
}
