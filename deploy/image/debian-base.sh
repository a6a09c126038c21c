#!/bin/sh
# Builds the Debian 12 base image the Dockerfile starts from
# (docker.io/library/debian:bookworm-slim) locally, for a machine that reaches
# a Debian mirror but no image registry: debootstrap --variant=minbase from
# the mirror this host's apt uses, trimmed like Debian's official -slim image
# (no docs, man pages or locales, apt lists and caches emptied, the same dpkg
# and apt settings), then `podman import`ed under that name.
#
#   deploy/image/debian-base.sh                  build it unless it exists
#   FORCE=1 deploy/image/debian-base.sh          rebuild
#   BASE_IMAGE=localhost/debian:12 deploy/image/debian-base.sh
#   MIRROR=http://ftp.de.debian.org/debian deploy/image/debian-base.sh
#
# Needs root, debootstrap and podman (apt-get install debootstrap podman).
# Takes 1-3 minutes with a nearby mirror (most of it is downloading).
set -eu
SUITE=${SUITE:-bookworm}
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
PODMAN=${PODMAN:-podman}

if [ "${FORCE:-0}" != 1 ] && $PODMAN image exists "$BASE_IMAGE" 2>/dev/null; then
  echo "debian-base: $BASE_IMAGE exists (FORCE=1 rebuilds it)"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "debian-base: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debian-base: apt-get install debootstrap" >&2; exit 1; }

# The mirror: the first URIs of a deb822 source (or the first `deb` line)
# that serves $SUITE; the security archive likewise for $SUITE-security.
apt_uri() {   # $1: suite to look for
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v want="$1" '
      /^[ \t]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
      END { if (uri != "" && hit) print uri }' "$f"
  done | head -n 1
  [ -r /etc/apt/sources.list ] &&
    awk -v want="$1" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/ && $(i+1) == want) { print $i; exit } }' \
      /etc/apt/sources.list
}
MIRROR=${MIRROR:-$(apt_uri "$SUITE" | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-$(apt_uri "$SUITE-security" | head -n 1)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

ROOT=$(mktemp -d /var/tmp/asrd-debian-base.XXXXXX)
# debootstrap mounts /proc and /sys inside the tree while it runs: unmount
# whatever is left there before removing it, and never cross a mount.
cleanup() {
  awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
echo "debian-base: debootstrap $SUITE from $MIRROR into $ROOT"
debootstrap --variant=minbase --components=main "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || {
  tail -n 30 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"

# What Debian's -slim images set (their debuerreotype scripts): dpkg leaves
# documentation out of every later install too, apt keeps no caches.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
CFG
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
echo 'Acquire::Languages "none";' >"$ROOT/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$ROOT/etc/apt/apt.conf.d/docker-gzip-indexes"
printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$ROOT/etc/apt/apt.conf.d/docker-autoremove-suggests"
# A snapshot mirror serves Release files past their Valid-Until: keep this
# host's choice.
if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false"'; then
  echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99snapshot"
fi
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
       "$ROOT"/usr/share/groff/* "$ROOT"/usr/share/lintian/* "$ROOT"/usr/share/linda/* \
       "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
       "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* \
       "$ROOT"/tmp/* "$ROOT"/root/.bash_history
: >"$ROOT/etc/machine-id"
echo "debian-base: importing as $BASE_IMAGE"
tar --numeric-owner --xattrs --one-file-system -C "$ROOT" -c . |
  $PODMAN import --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE $MIRROR, slimmed (deploy/image/debian-base.sh)" \
    - "$BASE_IMAGE" >/dev/null
$PODMAN image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$BASE_IMAGE"
