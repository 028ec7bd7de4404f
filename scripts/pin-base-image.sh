#!/usr/bin/env bash
# Prints the Python base image of the cluster build pinned by digest (name@sha256:...), for
# PACKWISE_BASE_IMAGE (skaffold.yaml's BASE_IMAGE build-arg of images/base):
#   PACKWISE_BASE_IMAGE=$(bash scripts/pin-base-image.sh) skaffold run -p eks --default-repo=...
# A tag (python:3.11-slim) moves with every upstream rebuild; a digest names one image, so a rebuild of
# the same sources gets the same base. Given a reference that already has a digest, prints it unchanged.
# Needs docker (pulls the image once to learn its registry digest).
set -euo pipefail
ref=${1:-${PACKWISE_BASE_IMAGE:-python:3.11-slim}}
if [[ "$ref" == *@sha256:* ]]; then
  echo "$ref"
  exit 0
fi
docker pull --quiet "$ref" >/dev/null
pinned=$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" | head -n 1)
if [[ "$pinned" != *@sha256:* ]]; then
  echo "error: $ref has no registry digest (a locally built image?); push it or give name@sha256:..." >&2
  exit 1
fi
echo "$pinned"
