#!/usr/bin/env bash
# Packwise on a local kind cluster, from nothing to the KFP UI:
#   1. a kind cluster (KIND_CLUSTER, default packwise)
#   2. Kubeflow Pipelines standalone, pinned (KFP_VERSION), from the official kustomize manifests
#   3. the Packwise images built by skaffold and loaded into the node (profile kind: nothing is pushed),
#      tagged with the release version the compiled pipelines reference
#   4. the credentials: random keys per identity in Secrets (the runner's and the watcher's MinIO users,
#      MLflow's basic auth; no value is written anywhere else), Argo's task securityContext defaults
#   5. the kind overlay (watcher, MLflow, RBAC, storage, config, seed Job, MinIO users Job) applied by
#      skaffold, the base image pinned by digest (scripts/pin-base-image.sh)
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

echo "credentials: one random identity per consumer (values go only into Secrets, never to disk or the terminal)"
kubectl get namespace packwise >/dev/null 2>&1 || kubectl create namespace packwise
random() { openssl rand -hex 20; }
# secret NAMESPACE NAME KEY=VALUE...: created once; re-runs keep the existing values (MLflow's admin user
# and the MinIO users were made with them)
secret() {
  local ns=$1 name=$2
  shift 2
  kubectl -n "$ns" get secret "$name" >/dev/null 2>&1 && return
  local args=()
  for kv in "$@"; do args+=(--from-literal="$kv"); done
  kubectl -n "$ns" create secret generic "$name" "${args[@]}" >/dev/null
}
from_secret() { kubectl -n "$1" get secret "$2" -o jsonpath="{.data.$3}" | base64 -d; }
need openssl
secret kubeflow packwise-minio-users RUNNER_ACCESS_KEY="packwise-runner-$(openssl rand -hex 4)" \
  RUNNER_SECRET_KEY="$(random)" WATCHER_ACCESS_KEY="packwise-watcher-$(openssl rand -hex 4)" WATCHER_SECRET_KEY="$(random)"
secret packwise mlflow-auth MLFLOW_TRACKING_USERNAME=packwise MLFLOW_TRACKING_PASSWORD="$(random)" \
  MLFLOW_FLASK_SERVER_SECRET_KEY="$(random)"
# the pipeline pods: the runner's MinIO user (launcher, Argo's log archive, tasks) and MLflow's user
secret kubeflow packwise-runner-s3 accesskey="$(from_secret kubeflow packwise-minio-users RUNNER_ACCESS_KEY)" \
  secretkey="$(from_secret kubeflow packwise-minio-users RUNNER_SECRET_KEY)"
# the warehouse: the in-cluster PostgreSQL's password (manifests/overlays/kind/postgres.yaml) and the tasks' DSN
secret kubeflow packwise-postgres POSTGRES_PASSWORD="$(random)"
secret kubeflow packwise-credentials AWS_ACCESS_KEY_ID="$(from_secret kubeflow packwise-minio-users RUNNER_ACCESS_KEY)" \
  AWS_SECRET_ACCESS_KEY="$(from_secret kubeflow packwise-minio-users RUNNER_SECRET_KEY)" \
  MLFLOW_TRACKING_USERNAME=packwise MLFLOW_TRACKING_PASSWORD="$(from_secret packwise mlflow-auth MLFLOW_TRACKING_PASSWORD)" \
  PACKWISE_WAREHOUSE_DSN="postgresql://packwise:$(from_secret kubeflow packwise-postgres POSTGRES_PASSWORD)@packwise-postgres.kubeflow.svc.cluster.local:5432/packwise"
# the watcher: its own MinIO user, limited to the trigger prefix (manifests/overlays/kind/minio-users)
secret packwise packwise-watcher-s3 AWS_ACCESS_KEY_ID="$(from_secret kubeflow packwise-minio-users WATCHER_ACCESS_KEY)" \
  AWS_SECRET_ACCESS_KEY="$(from_secret kubeflow packwise-minio-users WATCHER_SECRET_KEY)"

echo "task pods: Argo's securityContext defaults and log archive with the runner's user; PodSecurity warnings"
kubectl -n kubeflow patch configmap workflow-controller-configmap --type merge \
  --patch-file manifests/cluster-admin/workflow-controller-patch.yaml >/dev/null
# KFP's own pods in kubeflow (MinIO, MySQL) are not all `restricted`: warn and audit, do not enforce
kubectl label --overwrite namespace kubeflow pod-security.kubernetes.io/warn=restricted \
  pod-security.kubernetes.io/audit=restricted >/dev/null

echo "base image pinned by digest"
PACKWISE_BASE_IMAGE=$(bash scripts/pin-base-image.sh)
export PACKWISE_BASE_IMAGE
echo "  $PACKWISE_BASE_IMAGE"

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
MLflow   http://localhost:5000  (basic auth: user packwise, password from
           kubectl -n packwise get secret mlflow-auth -o jsonpath='{.data.MLFLOW_TRACKING_PASSWORD}' | base64 -d)
Submit:  .venv/bin/packwise submit training --week 1 --config manifests/overlays/kind/packwise.yaml \\
           --set cluster.host=http://localhost:8888
DONE
