#!/usr/bin/env bash
# Throwaway Redis and MongoDB-wire (FerretDB) servers for the tests.
#
# Sourced (by scripts/test.sh): defines cps_servers_start, which starts the
# servers on free loopback ports and exports CPSTORE_TEST_REDIS_URL and
# CPSTORE_TEST_MONGO_URI, and cps_servers_stop, which stops them and removes
# their files. The caller sets the trap that calls cps_servers_stop.
#
# Run directly: `scripts/test-servers.sh COMMAND [ARGS...]` runs one command
# with the servers up, for example a single test binary:
#   scripts/test-servers.sh build/tests/test_apikeys --verbose
# and with no command it prints the variables and waits for Ctrl-C.
#
# A variable the user already set is used as it is and its server is not
# started: CPSTORE_TEST_MONGO_URI=mongodb://... runs the tests on a real
# MongoDB, and then FerretDB is neither built nor started.
#
# Ports are drawn at random from 20000-31999, below Linux's ephemeral range,
# so they do not collide with the ports the tests themselves pick (which come
# from binding port 0); a server that still fails to bind is retried on
# another port.

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CPS_SERVERS_DIR=
CPS_REDIS_PID=
CPS_FERRETDB_PID=
CPS_PORT=

# True when something accepts TCP connections on 127.0.0.1:$1.
cps_port_accepts() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Set CPS_PORT to a port nothing listens on. (A variable, not $(...): a
# subshell would replay the same $RANDOM sequence on every call.)
cps_pick_port() {
    local i
    for i in $(seq 1 100); do
        CPS_PORT=$((20000 + RANDOM % 12000))
        if ! cps_port_accepts "$CPS_PORT"; then
            return 0
        fi
    done
    cps_die "no free TCP port found on 127.0.0.1 (tried $i)"
}

# True while process $1 runs (a zombie child that has exited does not).
cps_pid_running() {
    local state
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/^.*) \(.\).*$/\1/' "/proc/$1/stat" 2>/dev/null) ||
        return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Wait until process $1 accepts on port $2, for at most $3 seconds.
cps_wait_accepts() {
    local pid=$1 port=$2 tenths=$(($3 * 10))
    while [ "$tenths" -gt 0 ]; do
        cps_pid_running "$pid" || return 1
        if cps_port_accepts "$port"; then
            return 0
        fi
        sleep 0.1
        tenths=$((tenths - 1))
    done
    return 1
}

# SIGTERM process $1 (a child of this shell), SIGKILL after 10 s, reap it.
cps_stop_pid() {
    local pid=$1 tenths=100
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while [ "$tenths" -gt 0 ] && cps_pid_running "$pid"; do
        sleep 0.1
        tenths=$((tenths - 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Start redis-server without persistence; set CPS_REDIS_PID.
cps_start_redis() {
    local dir=$CPS_SERVERS_DIR/redis try
    mkdir -p "$dir"
    for try in 1 2 3; do
        cps_pick_port
        redis-server --bind 127.0.0.1 --port "$CPS_PORT" \
            --save '' --appendonly no --dir "$dir" \
            >"$dir/server.log" 2>&1 &
        CPS_REDIS_PID=$!
        if cps_wait_accepts "$CPS_REDIS_PID" "$CPS_PORT" 10; then
            export CPSTORE_TEST_REDIS_URL="redis://127.0.0.1:$CPS_PORT"
            return 0
        fi
        cps_stop_pid "$CPS_REDIS_PID"
        CPS_REDIS_PID=
    done
    tail -n 20 "$dir/server.log" >&2 || true
    cps_die "redis-server did not start (tried $try ports)"
}

# Start FerretDB on SQLite in a fresh directory; set CPS_FERRETDB_PID.
cps_start_ferretdb() {
    local dir=$CPS_SERVERS_DIR/ferretdb bin try
    bin=$("$CPS_ROOT/scripts/ferretdb.sh")
    for try in 1 2 3; do
        # A fresh, empty data directory for every attempt.
        rm -rf "$dir"
        mkdir -p "$dir/data"
        cps_pick_port
        # --debug-addr=- turns off its HTTP (metrics, pprof) listener and
        # --state-dir keeps its state.json out of the working directory.
        "$bin" --handler=sqlite --sqlite-url="file:$dir/data/" \
            --state-dir="$dir" --listen-addr="127.0.0.1:$CPS_PORT" \
            --telemetry=disable --debug-addr=- --log-level=warn \
            >"$dir/server.log" 2>&1 &
        CPS_FERRETDB_PID=$!
        if cps_wait_accepts "$CPS_FERRETDB_PID" "$CPS_PORT" 30; then
            export CPSTORE_TEST_MONGO_URI="mongodb://127.0.0.1:$CPS_PORT/"
            # Tests that stop a database mid-run start their own FerretDB.
            export CPSTORE_TEST_FERRETDB_BIN="$bin"
            return 0
        fi
        cps_stop_pid "$CPS_FERRETDB_PID"
        CPS_FERRETDB_PID=
    done
    tail -n 20 "$dir/server.log" >&2 || true
    cps_die "FerretDB did not start (tried $try ports)"
}

# Start whichever of the two servers the environment does not name yet.
cps_servers_start() {
    if [ -n "${CPSTORE_TEST_REDIS_URL:-}" ] &&
        [ -n "${CPSTORE_TEST_MONGO_URI:-}" ]; then
        cps_step "using CPSTORE_TEST_REDIS_URL and CPSTORE_TEST_MONGO_URI" \
            "as set"
        return 0
    fi
    CPS_SERVERS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cpstore-servers.XXXXXX")
    if [ -z "${CPSTORE_TEST_REDIS_URL:-}" ]; then
        cps_step "starting redis-server"
        cps_start_redis
    fi
    if [ -z "${CPSTORE_TEST_MONGO_URI:-}" ]; then
        cps_step "starting FerretDB $CPS_FERRETDB_VERSION (SQLite)"
        cps_start_ferretdb
    fi
    cps_step "CPSTORE_TEST_REDIS_URL=$CPSTORE_TEST_REDIS_URL"
    cps_step "CPSTORE_TEST_MONGO_URI=$CPSTORE_TEST_MONGO_URI"
}

# Stop what cps_servers_start started and remove its files. Safe to call
# more than once and after a partial start.
cps_servers_stop() {
    if [ -n "$CPS_REDIS_PID" ]; then
        cps_stop_pid "$CPS_REDIS_PID"
        CPS_REDIS_PID=
        unset CPSTORE_TEST_REDIS_URL
    fi
    if [ -n "$CPS_FERRETDB_PID" ]; then
        cps_stop_pid "$CPS_FERRETDB_PID"
        CPS_FERRETDB_PID=
        unset CPSTORE_TEST_MONGO_URI
    fi
    if [ -n "$CPS_SERVERS_DIR" ]; then
        rm -rf "$CPS_SERVERS_DIR"
        CPS_SERVERS_DIR=
    fi
}

# Traps for a script that starts the servers: stop them on any exit, and
# turn Ctrl-C and SIGTERM into an exit so that the EXIT trap runs.
cps_servers_trap() {
    trap cps_servers_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cps_servers_trap
    cps_servers_start
    if [ "$#" -gt 0 ]; then
        # Not exec: this shell stays to stop the servers afterwards.
        "$@"
    else
        printf 'export CPSTORE_TEST_REDIS_URL=%s\n' "$CPSTORE_TEST_REDIS_URL"
        printf 'export CPSTORE_TEST_MONGO_URI=%s\n' "$CPSTORE_TEST_MONGO_URI"
        if [ -z "$CPS_REDIS_PID$CPS_FERRETDB_PID" ]; then
            exit 0
        fi
        cps_step "servers running; Ctrl-C stops them"
        # Returns when a server exits, or when a signal's trap runs.
        wait -n || true
        for log in "$CPS_SERVERS_DIR"/*/server.log; do
            if [ -s "$log" ]; then
                tail -n 20 "$log" >&2
            fi
        done
        cps_die "a test server exited"
    fi
fi
