#!/usr/bin/env bash
# The test command: install what is missing, build, start throwaway Redis
# and FerretDB servers, run every test with CTest, stop the servers.
#
#   scripts/test.sh                      # everything
#   scripts/test.sh -R apikeys           # arguments go to ctest
#   CPSTORE_SANITIZE=1 scripts/test.sh   # ASan+UBSan build in build-asan
#   CPSTORE_TEST_MONGO_URI=mongodb://host:27017/ scripts/test.sh
#                                        # a real MongoDB instead of FerretDB
#   CPSTORE_TEST_REDIS_URL=redis://host:6379 scripts/test.sh
#                                        # an existing Redis
#
# Exits with ctest's status.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/test-servers.sh
. "$CPS_ROOT/scripts/test-servers.sh"

cd "$CPS_ROOT"

cps_step "checking packages"
"$CPS_ROOT/scripts/setup.sh"

if [ -z "${CPSTORE_TEST_MONGO_URI:-}" ]; then
    cps_step "checking FerretDB $CPS_FERRETDB_VERSION"
    "$CPS_ROOT/scripts/ferretdb.sh" >/dev/null
fi

if [ "${CPSTORE_SANITIZE:-0}" = 1 ]; then
    build_dir=build-asan
    cps_configure "$build_dir" -DCPSTORE_SANITIZE=ON
else
    build_dir=build
    cps_configure "$build_dir" -DCPSTORE_SANITIZE=OFF
fi
cps_compile "$build_dir"

# The tests write their processes' logs under $TMPDIR: give them a
# directory of this run, removed afterwards unless a test failed.
run_tmp=
keep_run_tmp=0
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    cps_servers_stop
    if [ -n "$run_tmp" ] && [ "$keep_run_tmp" = 0 ]; then
        rm -rf "$run_tmp"
    fi
}
cps_servers_trap
trap cleanup EXIT
cps_servers_start
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpstore-run.XXXXXX")

cps_step "running tests"
status=0
# --no-tests=error: a build that somehow holds no test must not pass.
TMPDIR=$run_tmp ctest --test-dir "$CPS_ROOT/$build_dir" --output-on-failure \
    --no-tests=error "$@" || status=$?

cps_step "stopping test servers"
cps_servers_stop
if [ "$status" -eq 0 ]; then
    cps_step "tests passed"
else
    keep_run_tmp=1
    cps_step "tests FAILED (ctest exit status $status); logs of the" \
        "processes the tests started: $run_tmp"
fi
exit "$status"
