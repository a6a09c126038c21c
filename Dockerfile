# asrd container image (deploy/README.md "Containers").
#
#   podman build --format docker -t asrd .      (docker build -t asrd .)
#   podman run --rm -p 8000:8000 --stop-timeout 40 asrd
#
# Stages: `build` compiles asrd with Debian 12's -dev packages; `runtime`
# (the default, last) is Debian 12 slim with only the shared libraries the
# binary links against, the pocketsphinx model and a non-root user.
# `redis` and `haproxy` are the other two services of compose.yaml, also
# from Debian 12 packages. Every package comes from Debian 12: nothing is
# downloaded from anywhere else.
#
# The base image is the official debian:bookworm-slim; where no registry is
# reachable, deploy/image/debian-base.sh builds the same thing locally with
# debootstrap (make image does it).
#
# podman: build with --format docker, or HEALTHCHECK is dropped (the OCI
# image format has no field for it). Neither format stores a stop timeout:
# give it at run time (podman/docker run --stop-timeout, compose
# stop_grace_period), longer than ASR_DRAIN_TIMEOUT_S (30 s).

ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The same packages `make run` installs (one list, scripts/deps.sh), in a
# layer of their own so a source change does not reinstall them.
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh run && rm -rf /var/lib/apt/lists/*
# .dockerignore keeps build outputs, tests' data, docs and .git out
COPY . .
RUN make -j"$(nproc)" build/release/asrd \
 && install -D -m 0755 -s build/release/asrd /out/usr/local/bin/asrd \
 && install -D -m 0755 deploy/image/entrypoint.sh /out/usr/local/bin/asrd-entrypoint \
 && install -D -m 0755 deploy/image/healthcheck.sh /out/usr/local/bin/asrd-healthcheck \
 && /out/usr/local/bin/asrd --version \
 # The Debian packages of the libraries the binary loads: what the runtime
 # stage installs, and nothing else (libc6, libstdc++6 ... are in the base).
 && ldd build/release/asrd | awk '$3 ~ /^\// { print $3 }' \
    | xargs -r realpath | xargs -r dpkg -S | cut -d: -f1 | sort -u >/out/runtime-packages \
 && cat /out/runtime-packages

# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS redis
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis -m 0750 /data
USER redis
WORKDIR /data
EXPOSE 6379
# AOF on (sessions survive a Redis restart), every second to disk; no RDB
# snapshots. compose.yaml passes the same flags; they are here so that the
# image alone is right too.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", \
     "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["redis-cli", "ping"]

# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS haproxy
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/compose/haproxy.cfg /etc/haproxy/haproxy.cfg
RUN haproxy -c -f /etc/haproxy/haproxy.cfg
USER haproxy
EXPOSE 8080 8404
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]

# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# Models installed next to the server (ASRD_MODELS= leaves them out: the
# mock engine needs none). pocketsphinx-en-us puts the US English model
# under /usr/share/pocketsphinx/model/en-us.
ARG ASRD_MODELS="pocketsphinx-en-us"
# With ASR_REDIS_URL empty (the default) the master starts a private
# redis-server for its workers' sessions (socket and log under
# ASR_RUNTIME_DIR, /tmp here). A deployment that points every instance at a
# shared Redis does not need it: ASRD_STORE= leaves it out.
ARG ASRD_STORE="redis-server"
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $(cat /tmp/runtime-packages) ${ASRD_MODELS} ${ASRD_STORE} \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 10001 asrd \
 && useradd --uid 10001 --gid asrd --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --no-log-init asrd
COPY --from=build /out/usr/local/bin/ /usr/local/bin/
# Numeric, so that a runtime can check "not root" without reading /etc/passwd.
USER 10001:10001
ENV ASR_HOST=0.0.0.0 \
    ASR_PORT=8000 \
    ASR_LOG_FORMAT=json
EXPOSE 8000
# SIGTERM to the master (PID 1 here) drains: open utterances get their final,
# clients close 1001, the process exits within ASR_DRAIN_TIMEOUT_S (30 s).
# The runtime's stop timeout must be longer (see the header).
STOPSIGNAL SIGTERM
# 200 while serving, 503 while draining (unhealthy: balancers stop sending).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/asrd-healthcheck"]
ENTRYPOINT ["/usr/local/bin/asrd-entrypoint"]
