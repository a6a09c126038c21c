#!/bin/sh
# Instructions the server's worker executes for a fixed load: one worker
# under valgrind's callgrind (instruction counts do not depend on how busy
# the machine is), 20 binary sessions for 10 s from asrd-load, then the
# worker's total and its event loop's share (uv_run, inclusive) divided by
# the chunks sent. Compare two builds by running it on each tree, alternated.
#
#   tools/bench/callgrind-per-chunk.sh TREE PORT TAG [ENV=VALUE ...]
#   e.g. tools/bench/callgrind-per-chunk.sh . 18302 after ASR_REDIS_URL=memory
#
# Prints: TAG total=<Ir> uv_run=<Ir> chunks=<n> per_chunk=<uv_run/chunks>
set -eu
tree=$1 port=$2 tag=$3
shift 3
cd "$tree"
out=/tmp/cg.$tag
rm -f "$out".*
env ASR_HOST=127.0.0.1 ASR_PORT="$port" ASR_WORKERS=1 ASR_LOG_LEVEL=warn "$@" \
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out.%p" build/release/asrd 2>/dev/null &
vp=$!
# valgrind starts slowly: wait for the worker to answer (up to a minute)
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
    sleep 0.1
done
build/release/asrd-load --url "ws://127.0.0.1:$port" --scenario sustained --sessions 20 --duration 10 \
    --ramp 1 --json "$out.load.json" >/dev/null 2>&1
sleep 1
kill -TERM $vp
wait $vp 2>/dev/null || true
sleep 1
chunks=$(/usr/bin/python3 -c "import json; print(json.load(open('$out.load.json'))['total']['chunks_sent'])")
# the worker is the file with the most instructions (the master only forks)
best=$(for f in "$out".[0-9]*; do echo "$(grep '^summary:' "$f" | awk '{print $2}') $f"; done | sort -n | tail -1)
total=${best%% *}
file=${best#* }
loop=$(callgrind_annotate --inclusive=yes --threshold=100 "$file" 2>/dev/null | grep -m1 "???:uv_run" |
       awk '{gsub(",","",$1); print $1}')
echo "$tag total=$total uv_run=$loop chunks=$chunks per_chunk=$((loop / chunks))"
