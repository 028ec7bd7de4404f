#!/usr/bin/env bash
# Builds packwise-base and then every component image (one folder per image under images/), tagged
# <prefix><name>:<tag> exactly as components/images.py resolves them, and prints their sizes.
#
# Environment (all optional):
#   BASE_IMAGE            Python base for images/base (default: the local Debian base made by
#                         build-local-base.sh if present, else python:3.11-slim)
#   PACKWISE_IMAGE_PREFIX repository prefix      (default packwise-)
#   PACKWISE_IMAGE_TAG    tag                    (default: the version in pyproject.toml)
#   DOCKER_BUILD_NETWORK  network used by RUN    (default host: reaches the index through the host's
#                         resolver and proxy; set to "default" for the daemon's bridge network)
#   PIP_INDEX_URL         package index used inside the build (default https://pypi.org/simple)
#   IMAGES                space-separated subset of component images to build (base is always built)
#
# The base is labelled io.packwise.source=<hash of the code, pyproject.toml, constraints.txt>
# (images/source_hash.py); component images inherit the label, so tests can tell stale images apart.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$(command -v python3)"
VERSION="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
PREFIX="${PACKWISE_IMAGE_PREFIX:-packwise-}"
TAG="${PACKWISE_IMAGE_TAG:-$VERSION}"
LOCAL_BASE="${PACKWISE_LOCAL_BASE:-packwise-python:3.11-bookworm}"
if [[ -z "${BASE_IMAGE:-}" ]]; then
  if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then BASE_IMAGE="$LOCAL_BASE"; else BASE_IMAGE="python:3.11-slim"; fi
fi

# Every image named in components/images.py must have a folder, and every folder must be named there.
mapfile -t MAPPED < <("$PY" - <<'PY'
import ast, pathlib
tree = ast.parse(pathlib.Path("components/images.py").read_text())
names = set()
for node in ast.walk(tree):
    target = getattr(getattr(node, "target", None), "id", "")
    if isinstance(node, ast.AnnAssign) and target == "COMPONENT_IMAGES":
        names |= set(ast.literal_eval(node.value).values())
    if isinstance(node, ast.AnnAssign) and target == "SERVICE_IMAGES":
        names |= set(ast.literal_eval(node.value))
print("\n".join(sorted(names)))
PY
)
FOLDERS=()
for d in images/*/; do
  name="$(basename "$d")"
  [[ "$name" != base && -f "$d/Dockerfile" ]] && FOLDERS+=("$name")
done
if [[ "${MAPPED[*]}" != "${FOLDERS[*]}" ]]; then
  echo "build-all: components/images.py names images [${MAPPED[*]}] but images/ has [${FOLDERS[*]}]" >&2
  exit 1
fi
read -r -a SELECTED <<<"${IMAGES:-${FOLDERS[*]}}"

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[[ -n "${PIP_INDEX_URL:-}" ]] && build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
for p in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [[ -n "${!p:-}" ]] && build_args+=(--build-arg "$p=${!p}")
done
net=()
[[ "${DOCKER_BUILD_NETWORK:-host}" != default ]] && net=(--network "${DOCKER_BUILD_NETWORK:-host}")
SOURCE_HASH="$("$PY" images/source_hash.py "$ROOT")"

declare -A SECONDS_TAKEN
timed_build() {  # name, then docker build arguments
  local name="$1"; shift
  local t0; t0=$(date +%s)
  echo "build-all: building $PREFIX$name:$TAG"
  if ! docker build --quiet "${net[@]}" "$@" >"/tmp/packwise-build-$name.log" 2>&1; then
    tail -40 "/tmp/packwise-build-$name.log" >&2
    echo "build-all: $PREFIX$name failed (full log /tmp/packwise-build-$name.log)" >&2
    exit 1
  fi
  SECONDS_TAKEN[$name]=$(( $(date +%s) - t0 ))
}

# The base's context is only what it copies, so a local .venv or .packwise is never sent to the daemon.
BASE_REF="${PREFIX}base:$TAG"
shopt -s nullglob
readme=(README*)
context="$(mktemp /tmp/packwise-base-context.XXXXXX.tar)"
trap 'rm -f "$context"' EXIT
tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -f "$context" \
    pyproject.toml constraints.txt "${readme[@]}" src components pipelines app images/base/Dockerfile
timed_build base "${build_args[@]}" --label "io.packwise.source=$SOURCE_HASH" \
  -f images/base/Dockerfile -t "$BASE_REF" - <"$context"

for name in "${SELECTED[@]}"; do
  timed_build "$name" --build-arg "PACKWISE_BASE=$BASE_REF" -t "$PREFIX$name:$TAG" "images/$name"
done

mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f", $1/1e6}'; }
base_mb=$(mb "$BASE_REF")
printf '\n%-32s %10s %12s %8s\n' IMAGE "SIZE (MB)" "+BASE (MB)" "BUILD s"
printf '%-32s %10s %12s %8s\n' "$BASE_REF" "$base_mb" "-" "${SECONDS_TAKEN[base]}"
for name in "${SELECTED[@]}"; do
  ref="$PREFIX$name:$TAG"; size=$(mb "$ref")
  printf '%-32s %10s %12s %8s\n' "$ref" "$size" "$(( size - base_mb ))" "${SECONDS_TAKEN[$name]}"
done
echo "(base built FROM $BASE_IMAGE; source $SOURCE_HASH)"
