#!/bin/sh
# Word error rate of asrd against the bare library on recordings nobody here
# made (Debian's pocketsphinx-testdata), each set scored with tools/asr-eval/wer.py:
#   (a) the bare library, one utterance per file (ps_decode)
#   (b) asrd REST: POST /v1/transcribe of each file
#   (c) asrd streaming at real time, binary and JSON chunks (asrd-load speech)
#
#   tools/asr-eval/accuracy.sh [BUILD]        BUILD default build/release
#
# Starts its own asrd (pocketsphinx, one worker) on a free port; writes
# hypotheses to a temporary directory and prints one summary line per set
# and path. Takes a few minutes (the streaming runs are real time).
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build/release}
D=/usr/share/pocketsphinx/test/data
PY=/usr/bin/python3
T=$(mktemp -d /tmp/asrd-accuracy.XXXXXX)
trap 'kill $srv 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ASR_ENGINE=pocketsphinx ASR_HOST=127.0.0.1 ASR_PORT=$port ASR_WORKERS=1 ASR_LOG_LEVEL=warn \
    ASR_RUNTIME_DIR=$T "$B/asrd" 2>"$T/server.log" &
srv=$!
for i in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/v1/health" && break; sleep 0.2; done

# the sets: reference file, audio files (librivox and cards WAVs; goforward raw)
librivox_ref=$D/librivox/transcription
cards_ref=$D/cards/cards.transcription
echo "go forward ten meters (goforward)" > "$T/goforward.ref"
cp "$D/goforward.raw" "$T/goforward.raw"
sox -t raw -r 16000 -c 1 -b 16 -e signed-integer -L "$D/goforward.raw" "$T/goforward.wav"

score() { # set path hyp ref
    printf '%-10s %-16s ' "$1" "$2"
    $PY tools/asr-eval/wer.py --json "$4" "$3" | $PY -c '
import json, sys
d = json.load(sys.stdin)
t = d.get("total", d)
print("WER %5.1f%%  (%d errors / %d words: %d sub, %d del, %d ins)" % (100 * t["wer"],
      t["sub"] + t["del"] + t["ins"], t["ref_words"], t["sub"], t["del"], t["ins"]))'
}

for set in librivox cards goforward; do
    case $set in
        librivox) files=$(ls $D/librivox/*.wav); ref=$librivox_ref ;;
        cards) files=$(ls $D/cards/*.wav); ref=$cards_ref ;;
        goforward) files=$T/goforward.wav; ref=$T/goforward.ref ;;
    esac
    # (a) the bare library
    # shellcheck disable=SC2086
    "$B/ps_decode" $files 2>/dev/null | grep -v '^#' > "$T/$set.bare.hyp"
    score $set "bare library" "$T/$set.bare.hyp" "$ref"
    # (b) REST
    : > "$T/$set.rest.hyp"
    for f in $files; do
        id=$(basename "$f" .wav)
        txt=$(curl -sf -X POST --data-binary @"$f" -H 'Content-Type: audio/wav' \
              "http://127.0.0.1:$port/v1/transcribe" | $PY -c 'import json,sys; print(json.load(sys.stdin)["text"])')
        printf '%s\t%s\n' "$id" "$txt" >> "$T/$set.rest.hyp"
    done
    score $set "asrd REST" "$T/$set.rest.hyp" "$ref"
    # (c) streaming at real time, one file at a time (one session, played
    # once: --duration 1), binary then JSON; accuracy, not capacity
    for mode in binary json; do
        : > "$T/$set.$mode.hyp"
        for f in $files; do
            "$B/asrd-load" --url "ws://127.0.0.1:$port" --scenario speech --wav "$f" --sessions 1 \
                --mode $mode --duration 1 --hyp "$T/one.hyp" --json "$T/one.json" >/dev/null 2>&1
            cat "$T/one.hyp" >> "$T/$set.$mode.hyp"
        done
        score $set "asrd stream $mode" "$T/$set.$mode.hyp" "$ref"
    done
done
