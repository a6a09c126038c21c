#!/bin/sh
# Reruns the measurements of docs/internals/pocketsphinx.md and prints the
# figures, each after the command that produced it ("$ ..." lines).
#
#   tools/asr-eval/measure.sh                 every section except helgrind
#   tools/asr-eval/measure.sh wer speed       chosen sections
#
# Sections: wer variants speed mem fork threads window window1 long cmn hint
# rate helgrind
# (helgrind: the threads test under valgrind's race detector, ~3 min CPU).
#
# Needs: Debian 12 with libpocketsphinx-dev, libsphinxbase-dev,
# libsndfile1-dev, pocketsphinx-en-us, pocketsphinx-testdata, sox,
# /usr/bin/python3 (valgrind for helgrind). Offline: reads only the Debian
# model and test recordings; temporary files go to a mktemp directory that
# is removed at exit. Everything runs under nice. The hypotheses are
# deterministic (same binary, same model, same input: same words); CPU
# figures vary with the load of the shared machine, so compare ratios
# within one run. Whole run: about 10 minutes of CPU on the dev machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
B=${OUT:-$here/build}
D=/usr/share/pocketsphinx/test/data
PY=/usr/bin/python3
LIBRI="$D/librivox/sense_and_sensibility_01_austen_64kb-0870.wav
$D/librivox/sense_and_sensibility_01_austen_64kb-0880.wav
$D/librivox/sense_and_sensibility_01_austen_64kb-0890.wav
$D/librivox/sense_and_sensibility_01_austen_64kb-0920.wav
$D/librivox/sense_and_sensibility_01_austen_64kb-0930.wav"
CARDS="$D/cards/001.wav $D/cards/002.wav $D/cards/003.wav $D/cards/004.wav $D/cards/005.wav"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

OUT="$B" "$here/build.sh" >/dev/null

# Prints the command, then runs it under nice.
run() {
    echo "\$ $*"
    nice "$@"
}

# runto FILE COMMAND...: the same, with the command's output into FILE.
runto() {
    to=$1
    shift
    echo "\$ $* > $(basename "$to")"
    nice "$@" > "$to"
}

# WER of a ps_decode output file against a reference: the TOTAL line.
wer_total() {
    $PY "$here/wer.py" "$1" "$2" | tail -1
}

printf 'go forward ten meters (goforward)\n' > "$tmp/goforward.ref"

section_wer() {
    echo "=== wer: the reference decoder (ps_decode, whole file, default model)"
    # shellcheck disable=SC2086
    runto "$tmp/libri.hyp" "$B/ps_decode" $LIBRI
    cat "$tmp/libri.hyp"
    run $PY "$here/wer.py" "$D/librivox/transcription" "$tmp/libri.hyp"
    # shellcheck disable=SC2086
    runto "$tmp/cards.hyp" "$B/ps_decode" $CARDS
    cat "$tmp/cards.hyp"
    run $PY "$here/wer.py" "$D/cards/cards.transcription" "$tmp/cards.hyp"
    runto "$tmp/gof.hyp" "$B/ps_decode" --seg "$D/goforward.raw"
    cat "$tmp/gof.hyp"
    run $PY "$here/wer.py" "$tmp/goforward.ref" "$tmp/gof.hyp"
}

# Decoder settings that matter for a streaming engine: WER and speed on
# librivox for each.
section_variants() {
    echo "=== variants: librivox WER and speed per decoding mode"
    printf '%-44s %-52s %s\n' "variant" "WER (S D I / words)" "audio-s per CPU-s (best of 2 passes)"
    for v in "whole file (default)|" \
             "stream, 100 ms chunks|--stream 100" \
             "stream, continue stream (no ps_start_stream)|--stream 100 --continue-stream" \
             "whole file, -fwdflat no|-fwdflat no" \
             "stream, -fwdflat no|--stream 100 -fwdflat no" \
             "stream, -fwdflat no -bestpath no|--stream 100 -fwdflat no -bestpath no" \
             "whole file, -bestpath no|-bestpath no" \
             "whole file, -remove_silence no|-remove_silence no" \
             "stream, -remove_silence no|--stream 100 -remove_silence no"; do
        name=${v%%|*}
        opts=${v#*|}
        # shellcheck disable=SC2086
        nice "$B/ps_decode" --repeat 2 $opts $LIBRI > "$tmp/v.hyp"
        w=$(wer_total "$D/librivox/transcription" "$tmp/v.hyp" | awk '{printf "%s (%s %s %s / %s)", $NF, $5, $6, $7, $4}')
        s=$(awk '/best_pass_audio_s_per_cpu_s/ {print $3}' "$tmp/v.hyp")
        printf '%-44s %-52s %s\n' "$name" "$w" "$s"
        echo "    (ps_decode --repeat 2 $opts librivox/*.wav; WER of pass 1)"
    done
}

section_speed() {
    echo "=== speed: one thread, librivox decoded 3 times, one decoder"
    # shellcheck disable=SC2086
    run "$B/ps_decode" --repeat 3 $LIBRI | grep '^# '
    # shellcheck disable=SC2086
    run "$B/ps_decode" --repeat 3 --stream 100 $LIBRI | grep '^# '
    # shellcheck disable=SC2086
    run "$B/ps_decode" --repeat 3 $CARDS | grep '^# audio'
}

section_mem() {
    echo "=== mem: what one decoder costs and where it goes"
    run "$B/ps_probe" mem "$D/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
    echo "--- the dictionary cut to the LM's vocabulary (the n-gram search can output nothing else)"
    run "$B/ps_probe" lmdict "$tmp/lmvocab.dict"
    # shellcheck disable=SC2086
    runto "$tmp/lmd.hyp" "$B/ps_decode" -dict "$tmp/lmvocab.dict" $LIBRI
    grep -E '^# (rss|ps_init)' "$tmp/lmd.hyp"
    wer_total "$D/librivox/transcription" "$tmp/lmd.hyp"
    # shellcheck disable=SC2086
    runto "$tmp/full.hyp" "$B/ps_decode" $LIBRI
    grep -E '^# rss' "$tmp/full.hyp"
    grep -v '^#' "$tmp/lmd.hyp" > "$tmp/lmd.words"
    grep -v '^#' "$tmp/full.hyp" > "$tmp/full.words"
    if cmp -s "$tmp/lmd.words" "$tmp/full.words"; then
        echo "hypotheses identical to the full dictionary's"
    else
        echo "hypotheses differ from the full dictionary's"
    fi
}

section_fork() {
    echo "=== fork: sharing a decoder's memory between processes"
    # shellcheck disable=SC2086
    run "$B/ps_probe" fork 4 $LIBRI
}

section_threads() {
    echo "=== threads: one decoder per thread, same file, hypotheses compared"
    run "$B/ps_probe" threads 4 3 "$D/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
    run "$B/ps_probe" threads 4 3 "$D/librivox/sense_and_sensibility_01_austen_64kb-0880.wav" --stream 100
    run "$B/ps_probe" threads 2 2 "$D/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
}

section_helgrind() {
    echo "=== helgrind: 2 threads, each its own decoder (slow: ~3 min of CPU)"
    echo "\$ valgrind --tool=helgrind $B/ps_probe threads 2 1 $D/goforward.raw"
    nice valgrind --tool=helgrind "$B/ps_probe" threads 2 1 "$D/goforward.raw" 2> "$tmp/hg.err" || true
    echo "helgrind reports (function at the top of each race's stack):"
    grep -A1 "Possible data race" "$tmp/hg.err" | grep -o 'at 0x[0-9A-F]*: [a-z_0-9]*' |
        awk '{print $3}' | sort | uniq -c
    grep "ERROR SUMMARY" "$tmp/hg.err"
}

section_window() {
    echo "=== window: growing prefixes (re-decode) vs partial hypotheses, 1 s steps"
    for f in $LIBRI; do
        run "$B/ps_probe" window "$f" --step 1000 --chunk 100
    done
}

# The same with one search pass (-fwdflat no -bestpath no): partials and
# final then come from the same pass.
section_window1() {
    echo "=== window1: partial hypotheses with -fwdflat no -bestpath no, 1 s steps"
    for f in $LIBRI; do
        run "$B/ps_probe" -fwdflat no -bestpath no window "$f" --step 1000 --chunk 100 --no-redecode
    done
}

# A 49 s utterance (librivox twice over): memory and final-pass cost grow
# with the utterance.
section_long() {
    echo "=== long: one 49.5 s utterance"
    # shellcheck disable=SC2086
    sox $LIBRI $LIBRI "$tmp/long.wav"
    echo "sox librivox/*.wav librivox/*.wav long.wav"
    run "$B/ps_decode" "$tmp/long.wav" | grep '^# '
    run "$B/ps_probe" window "$tmp/long.wav" --step 5000 --chunk 100 --no-redecode | grep -E '^(file|cost)'
    echo "word times of a streamed utterance: first and last word (the audio is 49.46 s)"
    for opt in "" "-remove_silence no"; do
        # shellcheck disable=SC2086
        runto "$tmp/long.seg" "$B/ps_decode" --seg --stream 100 $opt "$tmp/long.wav"
        grep '^#seg' "$tmp/long.seg" | sed -n '1p;$p'
    done
}

section_cmn() {
    echo "=== cmn: what a stream decoder carries from one utterance to the next"
    run "$B/ps_probe" cmn "$D/librivox/sense_and_sensibility_01_austen_64kb-0880.wav" \
        "$D/librivox/sense_and_sensibility_01_austen_64kb-0870.wav" \
        "$D/librivox/sense_and_sensibility_01_austen_64kb-0920.wav"
    echo "--- cards streamed on a fresh decoder (pass 1) and again with its CMN warmed by pass 1 (pass 2)"
    # shellcheck disable=SC2086
    runto "$tmp/cs.hyp" "$B/ps_decode" --stream 100 --repeat 2 $CARDS
    grep -v '^#' "$tmp/cs.hyp"
    echo "pass 1: $(wer_total "$D/cards/cards.transcription" "$tmp/cs.hyp")"
    grep '^#pass2' "$tmp/cs.hyp" | cut -f2- > "$tmp/cs2.hyp"
    echo "pass 2: $(wer_total "$D/cards/cards.transcription" "$tmp/cs2.hyp")"
    echo "--- the same, the decoder warmed by one librivox file (another speaker and recording) first"
    # shellcheck disable=SC2086
    runto "$tmp/cs3.hyp" "$B/ps_decode" --stream 100 "$D/librivox/sense_and_sensibility_01_austen_64kb-0880.wav" $CARDS
    echo "cards: $($PY "$here/wer.py" "$D/cards/cards.transcription" "$tmp/cs3.hyp" 2>/dev/null | tail -1)"
}

# One hint run: the file, the text, and a label; hypotheses scored by
# wer.py against what was actually said (librivox/transcription).
hint_case() {
    file=$1 text=$2 label=$3
    shift 3
    id=$(basename "$file" .wav)
    grep "($id)" "$D/librivox/transcription" > "$tmp/said.ref"
    echo "--- $label"
    echo "said: $(sed 's/<s> //; s/ <\/s>.*//' "$tmp/said.ref")"
    echo "\$ $B/ps_probe hint $file \"$text\" $*"
    nice "$B/ps_probe" hint "$file" "$text" "$@" > "$tmp/hint.out"
    grep -E '^#(hint|oov)' "$tmp/hint.out" || true
    printf '%-16s %-9s %-7s %-10s %-9s %s\n' mode "WER-said" "setup" "setup-RSS" "decode" hypothesis
    awk -F'\t' '!/^#/ {print $1}' "$tmp/hint.out" | while read -r mode; do
        awk -F'\t' -v m="$mode" '$1 == m {print $2 "\t" $3}' "$tmp/hint.out" > "$tmp/m.hyp"
        w=$(wer_total "$tmp/said.ref" "$tmp/m.hyp" | awk '{print $NF}')
        cost=$(awk -F'\t' -v m="$mode" '$1 == "#cost" && $2 == m && /setup cpu/ {print $3}' "$tmp/hint.out")
        setup=$(echo "$cost" | sed 's/.*setup cpu \([0-9.]*\) s.*/\1s/')
        rss=$(echo "$cost" | sed 's/.*setup rss \([-+0-9]*\) KiB.*/\1K/')
        dec=$(echo "$cost" | sed 's/.*decode cpu \([0-9.]*\) s.*/\1s/')
        printf '%-16s %-9s %-7s %-10s %-9s %s\n' "$mode" "$w" "$setup" "$rss" "$dec" "$(cut -f2 "$tmp/m.hyp")"
    done
    grep '^#conf' "$tmp/hint.out" | sed 's/^#conf\t/    confidence /'
}

section_hint() {
    echo "=== hint: the expected text given to the decoder"
    f880="$D/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
    f870="$D/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
    hint_case "$f880" "he was not an ill disposed young man" \
        "0880, hint = what was said" --weight 0.5 --weight 0.9
    hint_case "$f870" "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do for them" \
        "0870, hint = what was said" --weight 0.5 --weight 0.9 --no-lm-text
    hint_case "$f880" "he was not an ill tempered young man" \
        "0880, hint with one word changed (disposed -> tempered)" --weight 0.5 --weight 0.9 --no-lm-text
    hint_case "$f880" "he was not an ill disposed man" \
        "0880, hint missing a word the reader said (young)" --weight 0.5 --weight 0.9 --no-lm-text
    hint_case "$f880" "he might even have been made amiable himself" \
        "0880, hint = another sentence (0930's)" --weight 0.5 --weight 0.9 --no-lm-text
}

section_rate() {
    echo "=== rate: 8 kHz input and the 16 kHz model"
    mkdir -p "$tmp/8k" "$tmp/up"
    for f in $LIBRI; do
        b=$(basename "$f" .wav)
        sox "$f" -r 8000 "$tmp/8k/$b.wav"
        sox "$tmp/8k/$b.wav" -r 16000 "$tmp/up/$b.wav"
    done
    sed 's/^-upperf .*/-upperf 3500/' /usr/share/pocketsphinx/model/en-us/en-us/feat.params > "$tmp/feat8k.params"
    echo "sox FILE -r 8000 8k/FILE; sox 8k/FILE -r 16000 up/FILE (librivox)"
    echo "\$ ps_decode -samprate 8000 8k/*.wav   (feat.params' -upperf 6800 is above 4 kHz)"
    nice "$B/ps_decode" -samprate 8000 "$tmp"/8k/*.wav 2>&1 | head -2 || true
    echo "\$ ps_decode -samprate 8000 -featparams feat8k.params 8k/*.wav   (a copy with -upperf 3500)"
    nice "$B/ps_decode" -samprate 8000 -featparams "$tmp/feat8k.params" "$tmp"/8k/*.wav > "$tmp/r8.hyp" || true
    grep -v '^#' "$tmp/r8.hyp" | head -2
    wer_total "$D/librivox/transcription" "$tmp/r8.hyp"
    echo "\$ ps_decode up/*.wav   (8 kHz audio resampled back to 16 kHz)"
    nice "$B/ps_decode" "$tmp"/up/*.wav > "$tmp/up.hyp"
    grep -v '^#' "$tmp/up.hyp" | head -2
    wer_total "$D/librivox/transcription" "$tmp/up.hyp"
    echo "\$ ps_decode (the 16 kHz originals, for comparison)"
    # shellcheck disable=SC2086
    nice "$B/ps_decode" $LIBRI > "$tmp/orig.hyp"
    wer_total "$D/librivox/transcription" "$tmp/orig.hyp"
}

sections=${*:-wer variants speed mem fork threads window window1 long cmn hint rate}
for s in $sections; do
    case $s in
        wer|variants|speed|mem|fork|threads|window|window1|long|cmn|hint|rate|helgrind)
            "section_$s" ;;
        *) echo "unknown section: $s" >&2; exit 2 ;;
    esac
    echo
done
