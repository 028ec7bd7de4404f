#!/bin/sh
# Runs in the packwise-minio-users Job (minio/mc of the same release line as KFP 2.14's MinIO 2019-08):
# one MinIO user per consumer, each with a policy of its own, so no Packwise pod holds MinIO's root keys.
# Idempotent: adding an existing user resets its secret key to the one in the Secret.
set -eu
mc --config-dir /tmp/mc config host add kfp "$MINIO_ENDPOINT" "$MINIO_ROOT_ACCESS_KEY" "$MINIO_ROOT_SECRET_KEY" >/dev/null
for who in runner watcher; do
  case "$who" in
    runner) access="$RUNNER_ACCESS_KEY"; secret="$RUNNER_SECRET_KEY" ;;
    watcher) access="$WATCHER_ACCESS_KEY"; secret="$WATCHER_SECRET_KEY" ;;
  esac
  mc --config-dir /tmp/mc admin policy add kfp "packwise-$who" "/policies/$who-policy.json"
  mc --config-dir /tmp/mc admin user add kfp "$access" "$secret" >/dev/null
  mc --config-dir /tmp/mc admin policy set kfp "packwise-$who" "user=$access"
  echo "MinIO user for packwise-$who: policy packwise-$who"
done
