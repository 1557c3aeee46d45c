#!/usr/bin/env bash
# Install the Debian 12 packages that building, running and testing cpstore
# need. Idempotent: when everything is already installed it only asks dpkg
# and returns, without touching the network.
#
# Go (for building FerretDB, the test MongoDB server) is not a Debian
# package here: Debian 12's Go is too old for FerretDB v1.24.2, so Go 1.24 or
# later must be on PATH or in /usr/local/go (scripts/ferretdb.sh checks).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

packages=(
    # toolchain and build
    build-essential cmake pkg-config
    # libraries cpstore links against
    libuv1-dev libhiredis-dev libmongoc-dev libbson-dev libssl-dev
    uthash-dev libinih-dev
    # codegen: protobuf-c for the server, nanopb for the client library
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
    nanopb libnanopb-dev
    # tests: Criterion, the Redis server the tests start, redis-cli,
    # openssl for test certificates
    libcriterion-dev redis-server redis-tools openssl tzdata
    # Go fetches FerretDB's modules over HTTPS
    ca-certificates
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null ||
        true)
    if [ "${status:0:2}" != "ii" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

cps_step "installing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# sudo resets the environment, so the variable travels through env(1).
cps_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
cps_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
