#!/usr/bin/env bash
# The release artifact: target/release/epsm-ops, stripped, its site inside. Copy it anywhere and run it
# (README, "Install on the EPSM host"); no other file of this repository is needed beside it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
step "toolchain"
bash "$ROOT/scripts/setup.sh"
build_release
ls -l target/release/epsm-ops >&2
