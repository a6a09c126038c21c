#!/bin/sh
# Per-worker capacity with the Redis store, as deployed (docs/SCALING.md):
# a throwaway redis-server (AOF everysec), one asrd worker with
# ASR_REDIS_URL and ASR_STORE_REQUIRED=1, and `asrd-load --scenario capacity`
# over the conversation audio (about half speech). Prints the load tool's
# step table, then Redis's EVALSHA count and CPU.
#
#   tools/scaling_capacity.sh                          1000..3500 by 500, pinned
#   START=500 STEP=250 MAX=2500 tools/scaling_capacity.sh
#   PIN0=" " PIN1=" " tools/scaling_capacity.sh        unpinned (a busy shared host)
#   OUT=cap.json tools/scaling_capacity.sh
# Bounded: each step is 3 s ramp + 8 s + 3 s ramp-down + grace.
set -u
cd "$(dirname "$0")/.." || exit 1
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
RP=$(port); AP=$(port)
D=$(mktemp -d)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
  --dir "$D" --protected-mode no >/dev/null 2>&1 &
RPID=$!
trap 'kill $APID $RPID 2>/dev/null; wait 2>/dev/null; rm -rf "$D"' EXIT INT TERM
sleep 0.5
# shellcheck disable=SC2086
ASR_HOST=127.0.0.1 ASR_PORT=$AP ASR_WORKERS=1 ASR_WORKER_ID=cap- ASR_LOG_LEVEL=warn \
  ASR_REDIS_URL=redis://127.0.0.1:$RP ASR_STORE_REQUIRED=1 \
  ASR_MAX_SESSIONS_PER_WORKER=20000 ASR_MAX_CONNECTIONS=20000 ${PIN0:-taskset -c 0} build/release/asrd 2>"$D/asrd.log" &
APID=$!
sleep 1.5
uptime
# shellcheck disable=SC2086
${PIN1:-taskset -c 1} build/release/asrd-load --url "ws://127.0.0.1:$AP" --scenario capacity \
  --capacity-start "${START:-1000}" --capacity-step "${STEP:-500}" --capacity-max "${MAX:-3500}" \
  --duration 8 --ramp 3 --wav tests/data/generated/conversation16k.wav --quiet ${OUT:+--json "$OUT"}
uptime
redis-cli -p "$RP" info commandstats | grep evalsha
redis-cli -p "$RP" info cpu | grep -E 'used_cpu_(user|sys):'
grep -E '"level":"(warn|error)"' "$D/asrd.log" | tail -5
