#!/usr/bin/env bash
# The benchmark command: builds the release console, measures it and the EPSM-like stack, and prints
# a table of figures. Separate from the tests: figures are reported, not asserted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
prepare

rows=()
row() { rows+=("| $1 | $2 | $3 |"); }
kib() { echo "$(( ($1 + 512) / 1024 )) KiB"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f} s')"; }

build_release
wasm=target/site/pkg/epsm-ops.wasm
row "release wasm, raw" "$(kib "$(stat -c %s "$wasm")")" "size of $wasm (after wasm-opt)"
row "release wasm, brotli" "$(kib "$(stat -c %s "$wasm.br")")" "the copy the binary sends (cargo leptos --precompress)"
row "server binary, stripped, site inside" "$(kib "$(stat -c %s target/release/epsm-ops)")" "size of target/release/epsm-ops: the whole artifact"

step "idle RSS"
data=$(mktemp -d)
port=$(free_port)
# The development IdP: a bench machine has no way to the Chalmers IdP's metadata.
EPSM_OPS_LISTEN=127.0.0.1:$port EPSM_OPS_DATA_DIR=$data RUST_LOG=warn \
  EPSM_OPS_AUTH_DEV_IDP=true target/release/epsm-ops serve &
pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$port/" >/dev/null   # one page rendered, so the figure is not of a cold process
sleep 2
status() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$pid/status"; }
rss=$(status VmRSS) anon=$(status RssAnon) file=$(status RssFile)
kill -TERM "$pid"; wait "$pid" || true
rm -rf "$data"
row "server idle RSS" "$((rss / 1024)) MiB" "VmRSS 2 s after start and one page request (answered with the login redirect)"
row "of it, the process's own memory" "$((anon / 1024)) MiB" "RssAnon: heap, stacks (what the console allocates)"
row "of it, mapped files" "$((file / 1024)) MiB" "RssFile: the pages of the binary and its libraries the kernel mapped in (clean, shared, dropped under memory pressure)"

step "cold build and up of the EPSM-like stack"
project=epsmbench$$
# Free ports for this project only (not exported: the benches below start stacks of their own).
nginx_port=$(free_port); db_port=$(free_port)
compose() {
  NGINX_PUBLISH_PORT=$nginx_port DB_PUBLISH_PORT=$db_port \
    docker compose -f stack/docker-compose.production.yml --env-file stack/.env.production -p "$project" "$@"
}
docker builder prune -af >/dev/null
t0=$(now)
compose build --no-cache --pull >/dev/null 2>&1
t1=$(now)
compose up -d --wait --wait-timeout 300 >/dev/null 2>&1
t2=$(now)
compose down --volumes --rmi local --timeout 5 >/dev/null 2>&1
row "stack build --no-cache --pull (cold)" "$(secs "$t0" "$t1")" "7 services, empty build cache"
row "stack up -d until all healthy" "$(secs "$t1" "$t2")" "up -d --wait"
row "stack cold build + up" "$(secs "$t0" "$t2")" "the two above"

step "first load: the Overview's bytes in Chromium, the site from the binary"
while IFS= read -r line; do rows+=("$line"); done < <(
  EPSM_CONSOLE_BIN=target/release/epsm-ops cargo bench -p app --features ssr --bench first_load 2>/dev/null | grep '^| '
)

step "pages: every page under load beside /healthz, the console's CPU per reply, store writes, RSS"
while IFS= read -r line; do rows+=("$line"); done < <(
  EPSM_CONSOLE_BIN=target/release/epsm-ops cargo bench -p app --features ssr --bench pages 2>/dev/null | grep '^| '
)

step "deploy history: a year of deploys listed from the store"
while IFS= read -r line; do rows+=("$line"); done < <(
  cargo bench -p app --features ssr --bench history 2>/dev/null | grep '^| '
)

step "health: page under load, probe round, Docker API calls per round"
while IFS= read -r line; do rows+=("$line"); done < <(
  EPSM_CONSOLE_BIN=target/release/epsm-ops cargo bench -p app --features ssr --bench health 2>/dev/null | grep '^| '
)

step "deploy: one click against the same steps by hand, line latency"
while IFS= read -r line; do rows+=("$line"); done < <(
  EPSM_CONSOLE_BIN=target/release/epsm-ops cargo bench -p app --features ssr --bench deploy 2>/dev/null | grep '^| '
)

step "backup: ~1 GB database, console against a raw docker exec pg_dump, server RSS"
while IFS= read -r line; do rows+=("$line"); done < <(
  EPSM_CONSOLE_BIN=target/release/epsm-ops cargo bench -p app --features ssr --bench backup 2>/dev/null | grep '^| '
)

step "alerts: a container's death to the webhook's alert"
while IFS= read -r line; do rows+=("$line"); done < <(
  EPSM_CONSOLE_BIN=target/release/epsm-ops cargo bench -p app --features ssr --bench alerts 2>/dev/null | grep '^| '
)

step "source: the change card for 1 and 1000 commits ahead, fetch + checkout"
while IFS= read -r line; do rows+=("$line"); done < <(
  cargo bench -p app --features ssr --bench source 2>/dev/null | grep '^| '
)

printf '\n| figure | value | how |\n|---|---|---|\n'
printf '%s\n' "${rows[@]}"
