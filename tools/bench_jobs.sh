#!/bin/sh
# The job figures of docs/BENCHMARKS.md ("Jobs"): each case starts its own
# asrd (release build, a port of its own, the private redis-server), runs
# asrd-load against it and stops it by its pid.
#
#   tools/bench_jobs.sh submit     submit latency at steady rates, one worker
#   tools/bench_jobs.sh e2e        1,000 jobs end to end with the mock
#   tools/bench_jobs.sh real       audio seconds per CPU second, pocketsphinx
#   tools/bench_jobs.sh live       200 live streams' latency, alone and beside 1,000 jobs
#
# Results (asrd-load --json) go to $OUT (default /tmp/asrd-bench-jobs).
set -u
cd "$(dirname "$0")/.." || exit 2
BIN=${ASRD_BIN:-build/release/asrd}
LOAD=${ASRD_LOAD:-build/release/asrd-load}
OUT=${OUT:-/tmp/asrd-bench-jobs}
PORT=${PORT:-18931}
mkdir -p "$OUT"
SERVER_PID=

start() {   # start NAME VAR=VALUE...: an asrd with those settings
  name=$1; shift
  rt="$OUT/rt-$name"; mkdir -p "$rt"
  env -i PATH="$PATH" ASR_HOST=127.0.0.1 ASR_PORT=$PORT ASR_RUNTIME_DIR="$rt" ASR_LOG_LEVEL=warn \
      ASR_OUTBOUND_ALLOW_PRIVATE=1 "$@" "$BIN" >"$OUT/$name.server.log" 2>&1 &
  SERVER_PID=$!
  i=0
  until curl -sf "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench_jobs: $name did not start" >&2; cat "$OUT/$name.server.log" >&2; exit 1; }
    sleep 0.1
  done
  # and the job queue: an unknown job is 404 once Redis answers (503 before)
  i=0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/jobs/00000000000000000000000000000000")" = 404 ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench_jobs: $name: no job queue" >&2; exit 1; }
    sleep 0.1
  done
}

stop() {
  [ -n "$SERVER_PID" ] || return
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}
trap stop EXIT

metrics() { curl -s "http://127.0.0.1:$PORT/v1/metrics" >"$OUT/$1.metrics.json"; }

case "${1:-}" in
submit)
  # one worker; JOB_CONCURRENCY=0: only the submit path (nobody runs the jobs);
  # 2: the worker also runs them (the default); every submission new audio
  for conc in 0 2; do
    for rate in 20 50 100 200; do
      n="submit-c$conc-r$rate"
      start "$n" ASR_WORKERS=1 ASR_JOB_CONCURRENCY=$conc ASR_JOB_SPOOL_MAX_MB=0 ASR_JOB_QUEUE_MAX=0
      "$LOAD" --scenario jobs --url "http://127.0.0.1:$PORT" --rate $rate --duration 20 --connections 16 \
          --server-pid "$SERVER_PID" --json "$OUT/$n.json" | tee "$OUT/$n.txt"
      metrics "$n"
      stop
    done
  done ;;
e2e)
  for conc in 2 8; do
    n="e2e-c$conc"
    start "$n" ASR_WORKERS=2 ASR_JOB_CONCURRENCY=$conc ASR_JOB_SPOOL_MAX_MB=0
    "$LOAD" --scenario jobs --url "http://127.0.0.1:$PORT" --count 1000 --connections 32 \
        --server-pid "$SERVER_PID" --json "$OUT/$n.json" | tee "$OUT/$n.txt"
    metrics "$n"
    stop
  done ;;
real)
  wav=/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav
  [ -f "$wav" ] || { echo "bench_jobs: $wav missing (pocketsphinx-testdata)" >&2; exit 1; }
  n="real-ps"
  start "$n" ASR_WORKERS=2 ASR_ENGINE=pocketsphinx ASR_JOB_CONCURRENCY=2 ASR_INFERENCE_THREADS=2
  "$LOAD" --scenario jobs --url "http://127.0.0.1:$PORT" --count 20 --connections 4 --wav "$wav" \
      --server-pid "$SERVER_PID" --timeout 900 --json "$OUT/$n.json" | tee "$OUT/$n.txt"
  metrics "$n"
  stop ;;
live)
  # real-time streams for 40 s (200 with the mock; 10 with mock-windowed, whose
  # two decoding threads each hold a window ASR_MOCK_LATENCY_MS: about 40
  # windows a second); the second time 1,000 jobs are submitted 10 s in
  for engine in mock mock-windowed; do
    streams=200; [ $engine = mock-windowed ] && streams=10
    for with in alone burst; do
      n="live-$engine-$with"
      start "$n" ASR_WORKERS=2 ASR_ENGINE=$engine ASR_JOB_SPOOL_MAX_MB=0
      "$LOAD" --url "ws://127.0.0.1:$PORT" --sessions $streams --ramp 5 --duration 40 --quiet \
          --json "$OUT/$n.json" >"$OUT/$n.txt" 2>&1 &
      lp=$!
      if [ $with = burst ]; then
        sleep 10
        "$LOAD" --scenario jobs --url "http://127.0.0.1:$PORT" --count 1000 --connections 32 --timeout 600 \
            --json "$OUT/$n.jobs.json" | tee "$OUT/$n.jobs.txt"
      fi
      wait $lp
      echo "$n:"; grep -E "^(latency|added|errors) " "$OUT/$n.txt"
      metrics "$n"
      stop
    done
  done ;;
*)
  echo "usage: tools/bench_jobs.sh submit|e2e|real|live" >&2; exit 2 ;;
esac
