# shellcheck shell=bash
# Helpers shared by the scripts in this directory; sourced, never run.
#
# Progress lines go to stderr so that a script whose stdout is an answer
# (ferretdb.sh prints a path) stays usable in $(...).

CPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
CPS_FERRETDB_VERSION=v1.24.2

# Go and the cache location below need HOME; a CI shell may not set it.
if [ -z "${HOME:-}" ]; then
    HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
    export HOME
fi

cps_step() {
    printf '==> %s\n' "$*" >&2
}

cps_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Run a command as root: directly when we are root, through sudo otherwise.
cps_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        cps_die "need root (or sudo) to run: $*"
    fi
}

# Path of the go command, or nothing when Go is not installed.
cps_find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    fi
}

cps_nproc() {
    nproc 2>/dev/null || echo 2
}

# Configure build dir $1 (relative to the repository root); any further
# arguments are cmake options. The test and the run command share "build".
cps_configure() {
    local dir=$1
    shift
    cps_step "configuring $dir"
    cmake -S "$CPS_ROOT" -B "$CPS_ROOT/$dir" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >&2
}

# Build dir $1: all targets, or only the targets named after it.
cps_compile() {
    local dir=$1
    shift
    local targets=()
    if [ "$#" -gt 0 ]; then
        targets=(--target "$@")
    fi
    cps_step "building $dir"
    cmake --build "$CPS_ROOT/$dir" -j"$(cps_nproc)" "${targets[@]}" >&2
}
