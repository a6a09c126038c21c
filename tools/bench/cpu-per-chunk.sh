#!/bin/sh
# The worker's CPU time per chunk under a fixed load, for comparing two
# builds in one sitting (docs/BENCHMARKS.md "The layered restructure").
#
#   tools/bench/cpu-per-chunk.sh SERVER_BIN [SESSIONS] [SECONDS] [PORT]
#   (STORE=... sets ASR_REDIS_URL: "memory" by default; "" for builds from
#   before the private store, where empty meant in-process)
#
# Starts SERVER_BIN with one worker (mock engine, 50 ms, in-process store),
# streams SESSIONS real-time binary sessions of 100 ms chunks for SECONDS
# with this tree's asrd-load, and prints one line: the worker's user+system
# CPU over the steady part (read from /proc/<pid>/stat), the chunks the
# server counted meanwhile, and microseconds of CPU per chunk. CPU per
# chunk moves far less with a busy host than latency does; still, run the
# builds alternately and compare within one sitting.
set -eu
BIN=$1
N=${2:-1000}
D=${3:-20}
PORT=${4:-18731}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
LOAD=$HERE/build/release/asrd-load
[ -x "$LOAD" ] || { echo "build asrd-load first (make)" >&2; exit 2; }

ASR_HOST=127.0.0.1 ASR_PORT=$PORT ASR_WORKERS=1 ASR_LOG_LEVEL=error ASR_REDIS_URL=${STORE-memory} \
    ASR_MAX_SESSIONS_PER_WORKER=20000 ASR_MAX_CONNECTIONS=20000 ASR_MAX_CONNECTIONS_PER_IP=20000 \
    "$BIN" >/dev/null 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1 && break
    sleep 0.05
done

metric() { # the worker's pid (the master's only child) and chunks.total
    echo "$(pgrep -P $SRV | head -1)" "$(curl -sf "http://127.0.0.1:$PORT/v1/metrics" | /usr/bin/python3 -c '
import json, sys
print(json.load(sys.stdin)["chunks"]["total"])')"
}
cpu() { # utime + stime of pid, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

"$LOAD" --url "ws://127.0.0.1:$PORT" --scenario sustained --sessions "$N" --ramp 2 \
    --duration "$((D + 4))" >/dev/null 2>&1 &
LP=$!
sleep 4 # every session is streaming
set -- $(metric)
PID=$1 C0=$2 T0=$(cpu "$1")
sleep "$D"
set -- $(metric)
C1=$2 T1=$(cpu "$PID")
wait $LP || true
HZ=$(getconf CLK_TCK)
awk -v t="$((T1 - T0))" -v c="$((C1 - C0))" -v hz="$HZ" -v b="$BIN" 'BEGIN {
    printf "%s cpu_s=%.2f chunks=%d us_per_chunk=%.2f\n", b, t / hz, c, c ? t / hz * 1e6 / c : 0 }'
