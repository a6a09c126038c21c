#!/bin/sh
# Runs libFuzzer targets one after the other and prints one line per target.
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]     (make fuzz / make fuzz-ci call it)
# TARGET is a name like http or ws (default: every build/fuzz/fuzz_* binary).
# Each target runs SECONDS on a scratch copy of tests/fuzz/corpus/<target>
# (BUILD_DIR/work/<target>/corpus; new inputs go there, never into the repo),
# with tests/fuzz/regressions/<target> as a second, read-only corpus so that
# saved reproducers keep being run. Crash/leak/timeout files are written to
# BUILD_DIR/work/<target>/, the full log to BUILD_DIR/work/<target>/log.
# Exit status: 0 when every target ran clean, 1 otherwise.
# Environment: FUZZ_KEEP_CORPUS=1 keeps the scratch corpus of a previous run
# (default: start from the seeds); FUZZ_ABORT_ON_STALL (default 1, see net.c).
# Targets run one at a time under nice -n 10.
set -u
build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets="$*"
if [ -z "$targets" ]; then
  for b in "$build"/fuzz_*; do [ -x "$b" ] && targets="$targets ${b##*/fuzz_}"; done
fi

max_len() {
  case $1 in
    http) echo 32768 ;;       # a 17 KB head reaches 431; REST bodies beyond that add little
    ws) echo 98304 ;;         # enough audio to empty the 8 kHz rate bucket (64000 bytes)
    stream_msg) echo 16384 ;; # past the 256-byte fast path, far below the 88000 cap
    base64) echo 8192 ;;
    audio) echo 65536 ;;
    media) echo 65536 ;;     # a few seconds of Opus or AAC
    multipart) echo 65536 ;;
    query) echo 4096 ;;
    web) echo 4096 ;;
    feedback) echo 4096 ;;    # a short text and hypothesis: the alignment is quadratic
    jobreq) echo 16384 ;;
    *) echo 65536 ;;
  esac
}

# A server that stops reading while the client still has bytes to send and
# nothing is pending (no engine answer, no thread-pool job) is a finding too.
export FUZZ_ABORT_ON_STALL="${FUZZ_ABORT_ON_STALL-1}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_stack_use_after_return=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

status=0
summary=""
printf '%-11s %8s %10s %8s %8s %8s  %s\n' target seconds runs exec/s crashes corpus result
for t in $targets; do
  bin="$build/fuzz_$t"
  work="$build/work/$t"
  if [ ! -x "$bin" ]; then
    printf '%-11s missing %s\n' "$t" "$bin"; status=1; continue
  fi
  mkdir -p "$work"
  if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then rm -rf "$work/corpus"; fi
  mkdir -p "$work/corpus"
  [ -d "$here/corpus/$t" ] && cp -n "$here/corpus/$t"/* "$work/corpus/" 2>/dev/null
  rm -f "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*
  extra=""
  [ -d "$here/regressions/$t" ] && [ -n "$(ls -A "$here/regressions/$t" 2>/dev/null)" ] && extra="$here/regressions/$t"
  dict=""
  [ -f "$here/$t.dict" ] && dict="-dict=$here/$t.dict"
  start=$(date +%s)
  # -close_fd_mask=2: the server's log lines (stderr) are discarded; libFuzzer
  # and the sanitizers report on a duplicate of stderr, kept in the log.
  nice -n 10 "$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$work/" $dict \
    "$work/corpus" $extra >"$work/log" 2>&1
  rc=$?
  end=$(date +%s)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  crashes=$(ls "$work" | grep -cE '^(crash|leak|timeout|oom)-')
  corpus=$(ls "$work/corpus" | wc -l)
  result=ok
  if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
    result="FAILED (exit $rc): $(grep -a -m1 -E 'ERROR: |SUMMARY: |fuzz[_a-z]*: ' "$work/log" | cut -c1-120)"
    [ "$crashes" -eq 0 ] && crashes=1
    status=1
  fi
  printf '%-11s %8s %10s %8s %8s %8s  %s\n' "$t" "$((end - start))" "${runs:-?}" "${eps:-?}" "$crashes" "$corpus" "$result"
  [ "$result" = ok ] || ls "$work" | grep -E '^(crash|leak|timeout|oom)-' | sed "s|^|            artifact: $work/|"
done
[ $status -eq 0 ] && echo "fuzz: all targets clean" || echo "fuzz: FAILURES (logs in $build/work/<target>/log)"
exit $status
