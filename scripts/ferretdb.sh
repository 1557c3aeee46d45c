#!/usr/bin/env bash
# Make sure a FerretDB v1.24.2 binary exists and print its path.
#
# The tests need a MongoDB-wire server; FerretDB with its SQLite handler is
# one that needs no other service. The binary is cached at
#   ${XDG_CACHE_HOME:-$HOME/.cache}/cpstore/ferretdb-v1.24.2
# or at $CPSTORE_FERRETDB_BIN when that is set, and built only when missing.
#
# Why not just `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`:
# that builds, but the binary panics at start ("Invalid
# build/version/version.txt file content") because FerretDB embeds
# build/version/version.txt, which its own build writes first and the module
# does not ship. So we fetch the module with the Go toolchain, copy its
# source out of the read-only module cache, write version.txt, and build.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version=$CPS_FERRETDB_VERSION
module=github.com/FerretDB/FerretDB
bin=${CPSTORE_FERRETDB_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/cpstore/ferretdb-$version}

# True when $1 runs and reports the version we want.
is_wanted_build() {
    local out nl=$'\n'
    [ -x "$1" ] || return 1
    out=$("$1" --version 2>/dev/null) || return 1
    [[ "$nl$out$nl" == *"${nl}version: $version$nl"* ]]
}

if is_wanted_build "$bin"; then
    echo "$bin"
    exit 0
fi

# Never replace a file we did not build: a CPSTORE_FERRETDB_BIN that names
# some other program or FerretDB version is a mistake to report.
if [ -n "${CPSTORE_FERRETDB_BIN:-}" ] && [ -e "$bin" ]; then
    cps_die "CPSTORE_FERRETDB_BIN=$bin exists but is not FerretDB" \
        "$version; remove it or choose another path"
fi

go=$(cps_find_go)
if [ -z "$go" ]; then
    cps_die "Go 1.24 or later is needed to build FerretDB $version for" \
        "the tests, and no go was found on PATH or in /usr/local/go/bin." \
        "Install Go, or point CPSTORE_TEST_MONGO_URI at a running MongoDB."
fi

cps_step "building FerretDB $version (first run only, ~2 min)"
work=$(mktemp -d "${TMPDIR:-/tmp}/cpstore-ferretdb.XXXXXX")
# The copied sources are read-only like the module cache they came from.
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
log=$work/build.log

fail() {
    tail -n 40 "$log" >&2 || true
    cps_die "$1 (last lines of the log above)"
}

# `go mod download` outside any module fetches module@version through the
# module proxy and prints where it put the source.
(cd "$work" && "$go" mod download -json "$module@$version") \
    >"$work/download.json" 2>"$log" || {
    # The reason (proxy, TLS, ...) is in the JSON's "Error" field.
    cat "$work/download.json" >>"$log"
    fail "could not download $module@$version"
}
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' \
    "$work/download.json")
if [ -z "$src" ] || [ ! -d "$src" ]; then
    fail "go mod download did not report a source directory"
fi

cp -R "$src" "$work/src"
chmod -R u+w "$work/src"
printf '%s\n' "$version" >"$work/src/build/version/version.txt"

# A pure-Go build (FerretDB's SQLite is pure Go): no C toolchain involved.
(cd "$work/src" && CGO_ENABLED=0 "$go" build -buildvcs=false -trimpath \
    -o "$work/ferretdb" ./cmd/ferretdb) >>"$log" 2>&1 ||
    fail "go build of FerretDB $version failed"

if ! is_wanted_build "$work/ferretdb"; then
    "$work/ferretdb" --version >>"$log" 2>&1 || true
    fail "the FerretDB binary just built does not report $version"
fi

# Copy next to the destination, then rename: a concurrent run never sees a
# half-written binary.
mkdir -p "$(dirname "$bin")"
cp "$work/ferretdb" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
echo "$bin"
