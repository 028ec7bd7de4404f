#!/usr/bin/env bash
# Stops the port-forwards that scripts/kind-up.sh started and deletes the kind cluster (KFP, Packwise and
# every volume with it). KEEP_CLUSTER=1 only removes Packwise's objects and keeps the cluster and KFP.
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_CLUSTER=${KIND_CLUSTER:-packwise}

for pidfile in build/port-forward-*.pid; do
  [[ -e "$pidfile" ]] || continue
  pid=$(cat "$pidfile")
  # only our own port-forward, by the pid we recorded
  if kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= | grep "port-forward" >/dev/null; then
    kill "$pid"
  fi
  rm -f "$pidfile"
done

if [[ "${KEEP_CLUSTER:-0}" == "1" ]]; then
  skaffold delete --profile kind --kube-context "kind-$KIND_CLUSTER"
  kubectl --context "kind-$KIND_CLUSTER" delete secret packwise-credentials -n kubeflow --ignore-not-found
  kubectl --context "kind-$KIND_CLUSTER" delete namespace packwise --ignore-not-found
else
  kind delete cluster --name "$KIND_CLUSTER"
fi
