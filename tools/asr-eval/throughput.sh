#!/bin/sh
# Decoding throughput of asrd's file route against the bare library, on
# the same recordings (Debian's pocketsphinx-testdata: the librivox
# sentences and the cards set): audio seconds per CPU second.
#
#   tools/asr-eval/throughput.sh [BUILD] [PASSES]     BUILD default build/release
#
# (a) the bare library: build/release/ps_decode, every file as one
#     utterance in one process, PASSES passes (its own getrusage, decoding
#     only: the model load is left out).
# (b) asrd: one worker (in-process store, one inference thread), every file
#     sent to POST /v1/transcribe one after the other, PASSES passes; the
#     worker's whole CPU time (every thread: HTTP, decoding the WAV, VAD,
#     the session, the pool's decoder) read from /proc/<pid>/stat around
#     each pass. The server was started and warmed with one file first.
# Prints, per pass, audio s, CPU s and audio s per CPU s of each, and the
# ratio asrd / bare of the pass medians. Runs under nice; on a shared
# machine compare the ratio, not the absolute figures.
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build/release}
PASSES=${2:-3}
D=/usr/share/pocketsphinx/test/data
PY=/usr/bin/python3
FILES=$(ls "$D"/librivox/*.wav "$D"/cards/*.wav)
[ -x "$B/ps_decode" ] || { echo "no $B/ps_decode: build with pocketsphinx installed" >&2; exit 2; }

audio_s=$(for f in $FILES; do soxi -D "$f"; done | awk '{s += $1} END {printf "%.3f", s}')
T=$(mktemp -d /tmp/asrd-throughput.XXXXXX)
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT

echo "files: $(echo $FILES | wc -w), audio ${audio_s} s"
# (a) the bare library
# shellcheck disable=SC2086
nice "$B/ps_decode" --repeat "$PASSES" $FILES >"$T/bare.out" 2>/dev/null
# its summary: every pass together, and the fastest pass alone
bare=$(awk '$2 == "audio_s_per_cpu_s" { print $3 }' "$T/bare.out")
best=$(awk '$2 == "best_pass_audio_s_per_cpu_s" { print $3 }' "$T/bare.out")
echo "bare     passes=$PASSES audio_s_per_cpu_s=$bare (fastest pass ${best:-$bare})"

# (b) asrd
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ASR_ENGINE=pocketsphinx ASR_HOST=127.0.0.1 ASR_PORT=$port ASR_WORKERS=1 ASR_INFERENCE_THREADS=1 \
    ASR_REDIS_URL=memory ASR_LOG_LEVEL=warn nice "$B/asrd" 2>"$T/server.log" &
srv=$!
for _ in $(seq 1 150); do curl -sf -o /dev/null "http://127.0.0.1:$port/v1/health" && break; sleep 0.2; done
wpid=$(pgrep -P $srv | head -1)
hz=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$wpid/stat"; }
post() { curl -sf -o /dev/null -H 'Content-Type: audio/wav' --data-binary @"$1" \
             "http://127.0.0.1:$port/v1/transcribe" || echo "POST $1 failed" >&2; }
post "$(echo $FILES | cut -d' ' -f1)" # warm: first decode, caches
rates=""
for p in $(seq 1 "$PASSES"); do
    t0=$(cpu)
    for f in $FILES; do post "$f"; done
    t1=$(cpu)
    r=$(awk -v a="$audio_s" -v t="$((t1 - t0))" -v hz="$hz" 'BEGIN { printf "%.3f", a / (t / hz) }')
    echo "asrd     pass=$p cpu_s=$(awk -v t="$((t1 - t0))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }') audio_s_per_cpu_s=$r"
    rates="$rates $r"
done
med=$(echo $rates | tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
awk -v m="$med" -v b="$bare" 'BEGIN { printf "asrd/bare = %.3f (asrd median %s, bare %s audio s per CPU s)\n", m / b, m, b }'
