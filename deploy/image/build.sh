#!/bin/sh
# Builds the asrd image with podman: the Debian 12 base first when it is
# missing (debian-base.sh: no registry needed), then the Dockerfile.
# Prints how long each step took and the image's size.
#
#   deploy/image/build.sh                      IMAGE=localhost/asrd:dev
#   IMAGE=asrd:1.0 NO_CACHE=1 deploy/image/build.sh
#   BUILD_ARGS="--build-arg ASRD_MODELS=" deploy/image/build.sh    (no model)
set -eu
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-localhost/asrd:dev}
PODMAN=${PODMAN:-podman}
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
export BASE_IMAGE PODMAN
command -v "$PODMAN" >/dev/null || { echo "image: $PODMAN not found (apt-get install podman)" >&2; exit 1; }

t0=$(date +%s)
deploy/image/debian-base.sh
t1=$(date +%s)
# --pull=never: the base is local (built above or pulled beforehand);
# --format docker: keeps HEALTHCHECK, which the OCI format has no field for.
# shellcheck disable=SC2086
$PODMAN build --pull=never --format docker ${NO_CACHE:+--no-cache} \
  --build-arg BASE_IMAGE="$BASE_IMAGE" ${BUILD_ARGS:-} -t "$IMAGE" .
t2=$(date +%s)
size=$($PODMAN image inspect --format '{{.Size}}' "$IMAGE")
echo "image: $IMAGE $(( size / 1000000 )) MB (${size} bytes); base image $((t1 - t0)) s, image build $((t2 - t1)) s"
