#!/usr/bin/env bash
# Rate-limit throughput of cpstored against redis-benchmark running the same
# Lua script with the same concurrency and pipelining, side by side in one
# run on one machine (DESIGN.md section 8). The ratio is the figure that
# holds on a noisy machine; the absolute numbers are for this machine only.
#
#   scripts/bench.sh [SECONDS] [CONNECTIONS] [PIPELINE]    (default 10 4 32)
#
# Both sides get a fresh redis-server of their own. cpstore-bench spreads
# its checks over 1000 keys per connection with a limit that admits them
# all; redis-benchmark calls EVALSHA on random keys of the same shape.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=${1:-10}
conns=${2:-4}
pipeline=${3:-32}

"$CPS_ROOT/scripts/setup.sh"
cps_configure build -DCPSTORE_SANITIZE=OFF
cps_compile build cpstored cpstore-bench
bin=$CPS_ROOT/build/src

work=$(mktemp -d "${TMPDIR:-/tmp}/cpstore-bench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    local i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    cps_die "nothing listens on port $1"
}

start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
        >"$work/redis-$1.log" 2>&1 &
    pids+=($!)
    wait_port "$1"
}

# cpstored side.
rport=$(free_port)
start_redis "$rport"
cport=$(free_port)
"$bin/cpstored" --listen "127.0.0.1:$cport" \
    --redis "redis://127.0.0.1:$rport" --log-level warn \
    2>"$work/cpstored.log" &
pids+=($!)
wait_port "$cport"
cps_step "cpstored + Redis: $conns connections, pipeline $pipeline, ${seconds}s"
cp_json=$("$bin/cpstore-bench" --addr "127.0.0.1:$cport" --connections "$conns" \
    --pipeline "$pipeline" --duration "${seconds}s" --json)
cp_rps=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["rps"]))' "$cp_json")

# redis-benchmark side: the same script, the same shape of call.
bport=$(free_port)
start_redis "$bport"
sha=$(redis-cli -p "$bport" SCRIPT LOAD "$("$bin/cpstore-bench" --print-lua)")
requests=$((cp_rps * seconds))
if [ "$requests" -lt 10000 ]; then
    requests=10000
fi
cps_step "redis-benchmark EVALSHA: $conns connections, pipeline $pipeline"
rb_csv=$(redis-benchmark -p "$bport" -c "$conns" -P "$pipeline" \
    -n "$requests" -r 1000000 --csv \
    EVALSHA "$sha" 1 "bench:__rand_int__" 100000 1000 1 "id:__rand_int__")
rb_rps=$(printf '%s\n' "$rb_csv" | tail -n 1 | cut -d, -f2 | tr -d '"')

python3 - "$cp_json" "$rb_rps" "$conns" "$pipeline" <<'PY'
import json, sys
cp = json.loads(sys.argv[1])
rb = float(sys.argv[2])
print()
print(f"connections {sys.argv[3]}, pipeline {sys.argv[4]}")
print(f"cpstored RateLimiter.Check  {cp['rps']:>10.0f} checks/s  "
      f"p50 {cp['p50_ms']:.2f} ms  p99 {cp['p99_ms']:.2f} ms  "
      f"errors {cp['errors']}")
print(f"redis-benchmark EVALSHA     {rb:>10.0f} calls/s")
print(f"ratio cpstored / redis      {cp['rps'] / rb:>10.2f}")
PY
