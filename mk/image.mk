# Container image (Dockerfile) built and tested with podman (deploy/README.md
# "Containers").
#   make image          Debian 12 base image if missing (debootstrap, no
#                       registry needed), then the asrd image IMAGE
#   make image-test     make image, then run it: health, a stream, REST, and
#                       `podman stop` draining an open utterance (tests/image)
#   make image-base     only the base image (FORCE=1 rebuilds it)
#   IMAGE=asrd:1.0 make image;  NO_CACHE=1 make image (cold build)
# Not part of `make test` (deploy/README.md "Containers" has the measured times).
IMAGE ?= localhost/asrd:dev

.PHONY: image image-base image-test
image-base:
	deploy/image/debian-base.sh

image:
	IMAGE=$(IMAGE) deploy/image/build.sh

image-test:
	IMAGE=$(IMAGE) tests/image/run.sh $(IMAGE_TEST_ARGS)
