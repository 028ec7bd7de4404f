#!/usr/bin/env bash
# Builds a Python 3.11 base image from Debian packages, for machines that cannot pull python:3.11-slim
# (air-gapped sites, corporate proxies, CI here). debootstrap a minimal bookworm (its python3 is 3.11),
# trust the host's CA bundle (a TLS-inspecting proxy's CA included), then `docker import` the tree.
# The result is a drop-in BASE_IMAGE for images/base/Dockerfile; build-all.sh uses it when it exists.
#
# Environment (all optional):
#   PACKWISE_LOCAL_BASE  image to create           (default packwise-python:3.11-bookworm)
#   DEBIAN_SUITE         Debian suite              (default bookworm: python3 3.11)
#   DEBIAN_MIRROR        mirror for debootstrap    (default http://deb.debian.org/debian)
#   CA_BUNDLE            CA bundle to trust        (default /etc/ssl/certs/ca-certificates.crt)
#   FORCE=1              rebuild even if the image exists
set -euo pipefail

TAG="${PACKWISE_LOCAL_BASE:-packwise-python:3.11-bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "build-local-base: $TAG exists (FORCE=1 to rebuild)"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "build-local-base: debootstrap needs root; run with sudo" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "build-local-base: installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
if [[ ! -s "$CA_BUNDLE" ]]; then
  echo "build-local-base: CA bundle $CA_BUNDLE not found; set CA_BUNDLE" >&2
  exit 1
fi

start=$(date +%s)
rootfs="$(mktemp -d /tmp/packwise-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

# minbase + what python:3.11-slim carries that we need: the interpreter, venv/ensurepip, CA certificates.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR" >/tmp/packwise-debootstrap.log 2>&1 \
  || { tail -20 /tmp/packwise-debootstrap.log >&2; exit 1; }

# Trust the host's CAs: kept as a local CA (survives update-ca-certificates) and as the bundle itself.
install -m 0644 "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/packwise-host-bundle.crt"
install -m 0644 "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"

# Slim it like the official slim images: no apt caches, docs, man pages or locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  --message "debootstrap $SUITE + python3, host CA bundle" \
  - "$TAG" >/dev/null

echo "build-local-base: $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'), python $(docker run --rm "$TAG" python3 -c 'import sys; print(sys.version.split()[0])')) in $(( $(date +%s) - start ))s"
