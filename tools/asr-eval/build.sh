#!/bin/sh
# Builds the pocketsphinx evaluation tools against Debian's libraries
# (libpocketsphinx-dev, libsphinxbase-dev, libsndfile1-dev). Nothing is
# vendored. Output: $OUT (default tools/asr-eval/build/).
#
#   tools/asr-eval/build.sh            # -O2
#   CFLAGS='-O0 -g' tools/asr-eval/build.sh
#
# The exact command for one tool:
#   cc -std=c11 -O2 -g -Wall -Wextra -Werror ps_decode.c eval_util.c -o ps_decode \
#      $(pkg-config --cflags --libs pocketsphinx sphinxbase sndfile) -lm
set -eu
cd "$(dirname "$0")"
OUT=${OUT:-build}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
mkdir -p "$OUT"
PKG="$(pkg-config --cflags --libs pocketsphinx sphinxbase sndfile)"
for tool in ps_decode ps_probe; do
    [ -f "$tool.c" ] || continue
    # shellcheck disable=SC2086  # word splitting of the flags is intended
    nice $CC -std=c11 $CFLAGS -Wall -Wextra -Werror "$tool.c" eval_util.c \
        -o "$OUT/$tool" $PKG -lm -lpthread
done
echo "built: $(cd "$OUT" && ls)"
