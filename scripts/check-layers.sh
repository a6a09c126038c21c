#!/bin/sh
# Fails when an #include in src/ points up a layer (or sideways between
# peers). The layers, lowest first (docs/internals/architecture.md):
#
#   base     util, err, log, metrics, config: everything may use them
#   core     session, vad, audio, engine interface    (base)
#   net      conn, http, ws                           (base)
#   store    the session store and its backends       (base)
#   engines  one file per engine + the registry      (core, base)
#   api      routes and messages <-> core calls      (net, core, store, base)
#   server   main, master, worker: process shape     (everything)
#
# tools/asrd-load may use core (audio decoding) and base. Run from the repository root.
set -u
cd "$(dirname "$0")/.." || exit 2
allowed() {
  case "$1" in
    base) echo "" ;;
    core|net|store) echo "base" ;;
    engines) echo "core base" ;;
    api) echo "net core store base" ;;
    server) echo "api engines net core store base" ;;
    tools) echo "core base" ;;
    *) echo "?" ;;
  esac
}
bad=0
for f in $(find src tools/asrd-load -name '*.[ch]' | sort); do
  case "$f" in
    src/*) from=$(echo "$f" | cut -d/ -f2) ;;
    tools/*) from=tools ;;
  esac
  ok=$(allowed "$from")
  if [ "$ok" = "?" ]; then
    echo "check-layers: $f is in a folder that is not a layer (add it to scripts/check-layers.sh)"; bad=1; continue
  fi
  grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
    inc=$(echo "$line" | sed 's/.*"\(.*\)".*/\1/')
    case "$inc" in
      */*) to=$(echo "$inc" | cut -d/ -f1) ;;
      *) [ "$from" = tools ] && continue
         echo "$f:${line%%:*}: include \"$inc\" without its folder (write \"<layer>/$inc\")"; continue ;;
    esac
    [ "$to" = "$from" ] && continue
    case " $ok " in *" $to "*) continue ;; esac
    echo "$f:${line%%:*}: $from includes $to ($inc): $from may include only: ${ok:-nothing outside base}"
  done
done > /tmp/check-layers.$$
if [ -s /tmp/check-layers.$$ ]; then cat /tmp/check-layers.$$; bad=1; fi
rm -f /tmp/check-layers.$$
[ $bad -eq 0 ] && echo "check-layers: every include points down a layer"
exit $bad
