#!/usr/bin/env bash
# Packwise on a local kind cluster, from nothing to the KFP UI:
#   1. a kind cluster (KIND_CLUSTER, default packwise)
#   2. Kubeflow Pipelines standalone, pinned (KFP_VERSION), from the official kustomize manifests
#   3. the Packwise images built by skaffold and loaded into the node (profile kind: nothing is pushed),
#      tagged with the release version the compiled pipelines reference
#   4. the credentials Secret (copied from KFP's MinIO Secret: no value is written anywhere here)
#   5. the kind overlay (watcher, MLflow, RBAC, storage, config, seed Job) applied by skaffold
#   6. port-forwards: KFP UI and API on localhost:8080 (UI) / :8888 (API), MLflow on localhost:5000
# Needs: docker, kind, kubectl, skaffold on PATH. Re-running it is safe (every step is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_CLUSTER=${KIND_CLUSTER:-packwise}
KFP_VERSION=${KFP_VERSION:-2.14.3}
PACKWISE_TAG=${PACKWISE_TAG:-$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')}
KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
CONTEXT="kind-$KIND_CLUSTER"

need() { command -v "$1" >/dev/null || { echo "error: $1 is not on PATH; install it first" >&2; exit 1; }; }
for tool in docker kind kubectl skaffold; do need "$tool"; done

if ! kind get clusters | grep -x "$KIND_CLUSTER" >/dev/null; then
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi
kubectl config use-context "$CONTEXT" >/dev/null

echo "installing Kubeflow Pipelines $KFP_VERSION (standalone)"
kubectl apply -k "$KFP_MANIFESTS/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "$KFP_MANIFESTS/env/platform-agnostic?ref=$KFP_VERSION"
kubectl -n kubeflow wait --for=condition=Available --timeout=900s deployment --all

echo "credentials: packwise-credentials from KFP's MinIO Secret (namespaces kubeflow and packwise)"
kubectl get namespace packwise >/dev/null 2>&1 || kubectl create namespace packwise
access_key=$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)
secret_key=$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)
for ns in kubeflow packwise; do
  kubectl -n "$ns" create secret generic packwise-credentials \
    --from-literal=AWS_ACCESS_KEY_ID="$access_key" --from-literal=AWS_SECRET_ACCESS_KEY="$secret_key" \
    --dry-run=client -o yaml | kubectl apply -f -
done
unset access_key secret_key

echo "images (tag $PACKWISE_TAG) and the kind overlay, through skaffold"
skaffold run --profile kind --kube-context "$CONTEXT" --tag "$PACKWISE_TAG" --status-check=true

echo "port-forwards (logs in build/port-forward-*.log; scripts/kind-down.sh stops them)"
mkdir -p build
start_forward() {  # name namespace service local:remote
  local pidfile="build/port-forward-$1.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  nohup kubectl --context "$CONTEXT" -n "$2" port-forward "svc/$3" "$4" >"build/port-forward-$1.log" 2>&1 &
  echo $! > "$pidfile"
}
start_forward ui kubeflow ml-pipeline-ui 8080:80
start_forward api kubeflow ml-pipeline 8888:8888
start_forward mlflow packwise mlflow 5000:5000

cat <<DONE

KFP UI   http://localhost:8080
MLflow   http://localhost:5000
Submit:  .venv/bin/packwise submit training --week 1 --config manifests/overlays/kind/packwise.yaml \\
           --set cluster.host=http://localhost:8888
DONE
