#!/bin/sh
# Installs the Debian 12 packages asrd needs, when any is missing. Uses sudo
# when not root. Idempotent: a machine that has everything runs no apt-get.
#
#   scripts/deps.sh run    what building and running need (make run)
#   scripts/deps.sh test   that, plus the test toolchain and the JavaScript
#                          test clients from npm (make test); chromium is
#                          Debian's, driven by playwright-core (which
#                          downloads no browser)
#
# A package that starts a system service when installed (redis-server,
# nginx, haproxy, prometheus) must not leave it running on the user's ports:
# while apt-get runs, a policy-rc.d that refuses every start is in place
# (the Debian mechanism invoke-rc.d honours), and the services are disabled
# afterwards where systemd manages them. asrd starts its own redis-server
# (the embedded store) and the tests start their own servers.
set -e
what=${1:-run}
cd "$(dirname "$0")/.."

RUN_PKGS="build-essential pkg-config
libuv1-dev libhttp-parser-dev libwslay-dev libjansson-dev libsodium-dev
libhiredis-dev libwebrtc-audio-processing-dev libsndfile1-dev libsoxr-dev
nettle-dev libssl-dev libunistring-dev libcurl4-openssl-dev redis-server libgmime-3.0-dev
libavformat-dev libavcodec-dev libswresample-dev libavutil-dev
libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us"
TEST_PKGS="clang libclang-rt-14-dev clang-format valgrind espeak-ng sox
python3 python3-websockets python3-requests python3-pytest
prometheus haproxy nginx-light curl pocketsphinx-testdata chromium ffmpeg"
SERVICES="redis-server nginx haproxy prometheus"

case "$what" in
  run) PKGS=$RUN_PKGS ;;
  test) PKGS="$RUN_PKGS $TEST_PKGS" ;;
  *) echo "usage: scripts/deps.sh run|test" >&2; exit 2 ;;
esac

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ "$what" = test ]; then
  # Node.js and npm (JavaScript test clients) may come from elsewhere than
  # Debian on a developer machine; install Debian's only when absent.
  command -v node >/dev/null 2>&1 || missing="$missing nodejs"
  command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\n# scripts/deps.sh: no service starts while asrd installs packages\nexit 101\n' |
      $SUDO tee $policy >/dev/null
    $SUDO chmod 755 $policy
    made_policy=1
  fi
  rc=0
  $SUDO apt-get update -qq || rc=$?
  [ $rc -eq 0 ] && { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      $missing >/dev/null || rc=$?; }
  [ $made_policy -eq 1 ] && $SUDO rm -f $policy
  [ $rc -eq 0 ] || exit $rc
  if [ -d /run/systemd/system ]; then
    for s in $SERVICES; do
      case " $missing " in *" $s "*|*" nginx-light "*) $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true ;; esac
    done
  fi
fi

if [ "$what" = test ]; then
  # The JavaScript test clients, from package-lock.json, now and not during
  # a test run (tests/integration/run.sh never reaches the network).
  for d in tests/integration/node; do
    [ -f "$d/package-lock.json" ] || continue
    if ! (cd "$d" && npm ls --depth=0 >/dev/null 2>&1); then
      echo "deps: npm ci in $d"
      (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
fi
exit 0
