#!/bin/sh
# asrd container entrypoint. Every instance sharing a Redis needs its own
# worker id prefix (deploy/README.md, ASR_WORKER_ID): unless one is given,
# use the container's host name (its id under docker/podman, unique per
# replica of a scaled service). Then exec, so that asrd's master is PID 1 and
# gets the runtime's stop signal itself.
if [ -z "${ASR_WORKER_ID:-}" ]; then
  ASR_WORKER_ID="$(cat /proc/sys/kernel/hostname)-"
  export ASR_WORKER_ID
fi
exec /usr/local/bin/asrd "$@"
