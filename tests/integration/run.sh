#!/bin/sh
# asrd integration suite: the real binary (ASRD_BIN, default
# build/release/asrd) on loopback ports, driven by Python websockets/requests
# under pytest and by Node's ws and the official openai package.
#
#   tests/integration/run.sh               everything
#   tests/integration/run.sh -k resume     extra arguments go to pytest
#   tests/integration/run.sh --gen-only    only generate the audio
#
# ASRD_BIN containing "asan": the harness sets ASAN_OPTIONS/UBSAN_OPTIONS and
# fails a test whose server stderr has a sanitizer report.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
ASRD_BIN=${ASRD_BIN:-build/release/asrd}
case "$ASRD_BIN" in /*) ;; *) ASRD_BIN="$ROOT/$ASRD_BIN" ;; esac
export ASRD_BIN
GEN=tests/data/generated
PY=/usr/bin/python3
TEXT="hello world this is a speech test"

gen_audio() {
  [ -s $GEN/speech16k.pcm ] && [ -s $GEN/speech16k.wav ] && [ -s $GEN/speech44k_stereo.wav ] &&
    [ -s $GEN/speech8k.wav ] && [ -s $GEN/silence16k.wav ] && [ -s $GEN/conversation16k.wav ] && return 0
  command -v espeak-ng >/dev/null && command -v sox >/dev/null || {
    echo "run.sh: espeak-ng and sox are needed (scripts/deps.sh installs them)" >&2; return 1; }
  mkdir -p $GEN || return 1
  tmp=$GEN/.espeak.wav
  espeak-ng -v en -s 160 -w $tmp "$TEXT" || return 1
  sox $tmp -r 16000 -c 1 -b 16 -e signed-integer $GEN/speech16k.wav || return 1
  sox $GEN/speech16k.wav -t raw -r 16000 -c 1 -b 16 -e signed-integer -L $GEN/speech16k.pcm || return 1
  sox $tmp -r 44100 -c 2 -b 16 -e signed-integer $GEN/speech44k_stereo.wav || return 1
  sox $tmp -r 8000 -c 1 -b 16 -e signed-integer $GEN/speech8k.wav || return 1
  sox -n -r 16000 -c 1 -b 16 -e signed-integer $GEN/silence16k.wav trim 0 2 || return 1
  # One side of a conversation, for capacity runs (docs/BENCHMARKS.md): four
  # sentences, each followed by a pause about as long (the other party's
  # turn), so about half of the 30 ms frames are speech.
  i=0; parts=""
  for t in "good morning, thank you for calling, how can I help you today" \
           "I would like to check the status of my order from last week" \
           "sure, can you give me the order number and the name on the account" \
           "it is four seven one two, under the name of Alex Smith"; do
    espeak-ng -v en -s 160 -w $GEN/.turn$i.raw.wav "$t" || return 1
    sox $GEN/.turn$i.raw.wav -r 16000 -c 1 -b 16 -e signed-integer $GEN/.turn$i.wav pad 0 3 || return 1
    parts="$parts $GEN/.turn$i.wav"; i=$((i+1))
  done
  sox $parts $GEN/conversation16k.wav || return 1
  rm -f $tmp $GEN/.turn*.wav
  echo "run.sh: generated audio in $GEN"
}

gen_audio || exit 1
[ "${1:-}" = "--gen-only" ] && exit 0

if [ ! -x "$ASRD_BIN" ]; then
  echo "run.sh: no server binary at $ASRD_BIN (build it with make)" >&2
  exit 1
fi

$PY -c 'import pytest, websockets, requests' 2>/dev/null || {
  echo "run.sh: $PY lacks pytest/websockets/requests (apt-get install python3-pytest python3-websockets python3-requests)" >&2
  exit 1
}

# Node client deps: installed by the set-up step (scripts/deps.sh test,
# which make test runs), never here: a test run does not reach the network.
NODE_DIR=tests/integration/node
node_ok=1
(cd $NODE_DIR && npm ls --depth=0 >/dev/null 2>&1) || node_ok=0

LOG=$(mktemp /tmp/asrd-pytest.XXXXXX)
RC=$(mktemp /tmp/asrd-pytest-rc.XXXXXX)
echo "== pytest (ASRD_BIN=$ASRD_BIN)"
{ $PY -m pytest -q -p no:cacheprovider -rfEs tests/integration "$@" 2>&1; echo $? >"$RC"; } | tee "$LOG"
py_rc=$(cat "$RC")
py_line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|errors|skipped|deselected)|^(=+ )?no tests ran' "$LOG" | tail -1)
rm -f "$RC"

node_rc=0
if [ $# -eq 0 ]; then
  echo "== node --test (ws, openai)"
  if [ $node_ok -eq 1 ]; then
    node --test $NODE_DIR/stream.test.js $NODE_DIR/openai.test.js; node_rc=$?
  else
    echo "run.sh: the Node test clients are not installed (scripts/deps.sh test)" >&2; node_rc=1
  fi
fi
rm -f "$LOG"

echo "node: $( [ $node_rc -eq 0 ] && echo ok || echo FAILED )"
echo "${py_line:-pytest printed no summary line}"
[ "$py_rc" -eq 0 ] && [ $node_rc -eq 0 ]
