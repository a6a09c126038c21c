#!/bin/sh
# Installs the Debian 12 packages asrd builds, runs and tests with, when any is
# missing. Uses sudo when not root. Idempotent: a machine that has everything
# runs no apt-get at all.
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev valgrind
libuv1-dev libhttp-parser-dev libwslay-dev libjansson-dev libsodium-dev
libhiredis-dev libwebrtc-audio-processing-dev libsndfile1-dev libsoxr-dev
nettle-dev libssl-dev espeak-ng sox python3 python3-websockets python3-requests python3-pytest
redis-server prometheus haproxy nginx-light curl"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm (for the JavaScript test client) may come from elsewhere
# than Debian on a developer machine; install Debian's only when absent.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
