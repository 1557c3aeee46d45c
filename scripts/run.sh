#!/usr/bin/env bash
# The run command: install what is missing, build, and run cpstored in the
# foreground. Every argument goes to cpstored.
#
#   scripts/run.sh
#       memory backends (nothing is durable), listening on 127.0.0.1:7300
#   scripts/run.sh --redis redis://127.0.0.1:6379 \
#                  --mongo mongodb://127.0.0.1:27017/cpstore
#       real backends; the CPSTORE_REDIS_URL and CPSTORE_MONGO_URI
#       environment variables work as well
#   scripts/run.sh --listen unix:/tmp/cpstored.sock --log-level debug
#
# Build output and progress go to stderr, so stdout is cpstored's alone.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$CPS_ROOT/scripts/setup.sh"
cps_configure build -DCPSTORE_SANITIZE=OFF
cps_compile build cpstored cpstore
cps_step "starting cpstored $*"
exec "$CPS_ROOT/build/src/cpstored" "$@"
