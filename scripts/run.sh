#!/usr/bin/env bash
# The run command: builds the console (release) and serves it on http://127.0.0.1:3000 with the bundled
# EPSM-like stack as its project and its store in ./data. Uses the Docker engine that answers at
# DOCKER_HOST (or the local socket), or starts a private one for as long as this command runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
prepare
# git does not keep file modes: the env file holds secrets and is the owner's alone.
chmod 600 stack/.env.production

build_release

step "serve on http://127.0.0.1:3000 (Ctrl-C stops)"
# Without a configuration file: login through the development IdP (loopback only), with a person for
# each role to pick. With `--config FILE` (a real installation: auth.idp_metadata and its role
# rules), nothing here overrides what the file says about login.
if [[ " $* " != *" --config "* && " $* " != *" --config="* ]]; then
  export EPSM_OPS_AUTH_DEV_IDP=${EPSM_OPS_AUTH_DEV_IDP:-true}
  export EPSM_OPS_AUTH_ADMINS=${EPSM_OPS_AUTH_ADMINS:-'{ids=["admin@dev.idp"]}'}
  export EPSM_OPS_AUTH_DEPLOYERS=${EPSM_OPS_AUTH_DEPLOYERS:-'{ids=["deployer@dev.idp"]}'}
  export EPSM_OPS_AUTH_VIEWERS=${EPSM_OPS_AUTH_VIEWERS:-'{ids=["viewer@dev.idp"]}'}
fi
target/release/epsm-ops serve "$@" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server; engine_stop; registry_stop' EXIT INT TERM
wait $server
