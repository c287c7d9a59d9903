#!/usr/bin/env bash
# The test command: from a fresh machine to a verdict. Installs what is missing, gives the tests a
# Docker engine (a private one, removed at exit, when none answers), builds the EPSM-like stack's base,
# then formatting, lints, the site build, unit + integration tests against the engine and the stack,
# and the browser tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
prepare
# A CI run builds once from a clean clone: incremental caches would only cost disk and time.
[ -n "${CI:-}" ] && export CARGO_INCREMENTAL=0

step "format"
cargo fmt --all -- --check
step "lint: server side (app with ssr, server, test bed)"
cargo clippy --all-targets -- -D warnings
step "lint: browser side (app with hydrate, frontend)"
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

# The wasm, CSS and assets only: the test build below makes the console's binary. A server built here
# would differ from it in features (the tests' dev-dependencies), a second copy of every crate on disk.
step "build the site (wasm, CSS, assets)"
cargo leptos build --frontend-only

step "unit, integration and browser tests"
if command -v cargo-nextest >/dev/null; then
  # Each test in its own process, binaries side by side; .config/nextest.toml limits how many hold a
  # stack at once. Its summary gives every test's time.
  # No backtraces: a failing test's output ends with its panic message (which names file and line),
  # not with the frames of the test runtime.
  RUST_BACKTRACE=0 cargo nextest run --no-fail-fast
else
  # cargo runs one test binary at a time; the tests inside one binary run in parallel.
  cargo test --no-fail-fast
fi
