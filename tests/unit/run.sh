#!/bin/sh
# Runs every unit test binary in $1 and prints one total line.
dir=${1:-build/release/tests}
tp=0; tf=0; bad=""
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | sed 's/^/   /'
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
  [ -n "$p" ] || { p=0; f=1; }
  [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
  tp=$((tp + p)); tf=$((tf + f))
  [ "$f" -ne 0 ] && bad="$bad $(basename "$t")"
done
echo "unit: $tp passed, $tf failed"
[ -n "$bad" ] && echo "failing:$bad"
[ "$tf" -eq 0 ]
