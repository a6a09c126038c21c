#!/bin/sh
# make image-test: build the image (deploy/image/build.sh: the Debian 12
# base with debootstrap if missing, then the Dockerfile), then run it with
# podman under pytest (tests/image/test_image.py). Needs root, podman, runc
# and debootstrap (installed here when missing), espeak-ng and Debian's
# python3-pytest/-websockets/-requests (scripts/deps.sh).
#
#   tests/image/run.sh                 build + test
#   tests/image/run.sh -k stop         extra arguments go to pytest
#   SKIP_BUILD=1 tests/image/run.sh    test the image already built
set -u
cd "$(dirname "$0")/../.." || exit 1
IMAGE=${IMAGE:-localhost/asrd:dev}
PODMAN=${PODMAN:-podman}
export IMAGE PODMAN
# podman's settings for this machine (runc, no default ulimits) unless the
# caller has their own
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/tests/image/containers.conf}

[ "$(id -u)" -eq 0 ] || { echo "image-test: needs root (podman, debootstrap)" >&2; exit 1; }
missing=""
for p in podman runc debootstrap podman-compose golang-github-containernetworking-plugin-dnsname python3-yaml; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "image-test: installing$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null || exit 1
fi

t0=$(date +%s)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  deploy/image/build.sh || exit 1
fi
t1=$(date +%s)
tests/integration/run.sh --gen-only >/dev/null || exit 1
/usr/bin/python3 -m pytest -q -p no:cacheprovider -rfEs tests/image "$@"
rc=$?
t2=$(date +%s)
echo "image-test: build $((t1 - t0)) s, tests $((t2 - t1)) s"
# containers left by an interrupted run (the tests remove their own)
$PODMAN ps -a --filter name=asrd-image-test- --format '{{.Names}}' | xargs -r $PODMAN rm -f -t 0 >/dev/null 2>&1
exit $rc
