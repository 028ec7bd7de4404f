#!/usr/bin/env bash
# Gets a Docker engine running on this machine and builds every Packwise image with the local path
# (a Debian-built Python base, no registry pull). Idempotent: skips what is already there.
#   1. installs docker.io (and debootstrap) with apt-get if `dockerd` is missing;
#   2. starts dockerd in the background if no engine answers, and waits for it;
#   3. images/build-local-base.sh, then images/build-all.sh.
# Environment: DOCKER_WAIT (seconds, default 60); SKIP_BUILD=1 to only start the engine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  echo "ci-docker: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "ci-docker: starting dockerd (log /tmp/dockerd.log)"
  nohup dockerd >/tmp/dockerd.log 2>&1 &
  for _ in $(seq "${DOCKER_WAIT:-60}"); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    tail -20 /tmp/dockerd.log >&2
    echo "ci-docker: dockerd did not answer within ${DOCKER_WAIT:-60}s" >&2
    exit 1
  fi
fi
echo "ci-docker: engine $(docker version --format '{{.Server.Version}}') is up"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  bash "$ROOT/images/build-local-base.sh"
  bash "$ROOT/images/build-all.sh"
fi
