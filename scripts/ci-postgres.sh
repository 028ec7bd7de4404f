#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests and the bench; prints its DSN.
#
#   eval "$(scripts/ci-postgres.sh)"   # exports PACKWISE_TEST_PG_DSN and PACKWISE_TEST_PG_DIR
#   scripts/ci-postgres.sh stop DIR    # stops the cluster started in DIR and removes DIR
#   scripts/ci-postgres.sh install     # only installs the package (CI: the tests start their own cluster)
#   PACKWISE_PG_DURABLE=1 scripts/ci-postgres.sh   # the server's own durability (fsync, full-page writes:
#                                      # the bench, whose loads a production server would write so)
#
# Installs Debian's postgresql package when initdb is missing. The cluster runs as user postgres
# (initdb refuses root) on 127.0.0.1, a free port, password (scram) authentication over TCP with a
# throwaway password, so the tests can check what a wrong password does.
set -euo pipefail

if [[ "${1:-}" == "stop" ]]; then
  dir="${2:?usage: ci-postgres.sh stop DIR}"
  bin="$(cat "$dir/bindir")"
  su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -m fast stop" >/dev/null
  rm -rf "$dir"
  exit 0
fi

find_bindir() {
  local initdb
  initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | grep -v '\*' | sort -V | tail -n 1 || true)"
  [[ -n "$initdb" ]] && dirname "$initdb"
}

bin="$(find_bindir || true)"
if [[ -z "$bin" ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y --no-install-recommends postgresql >&2
  bin="$(find_bindir)"
fi
[[ "${1:-}" == "install" ]] && exit 0

dir="$(mktemp -d /tmp/packwise-pg.XXXXXX)"
chown postgres "$dir"
echo "$bin" >"$dir/bindir"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
password="packwise-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
echo "$password" >"$dir/pwfile"
chown postgres "$dir/pwfile"
su postgres -s /bin/sh -c "'$bin/initdb' -D '$dir/data' -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile='$dir/pwfile' --no-sync -E UTF8" >/dev/null
# the tests' cluster skips what only a crash of the machine would need; a durable one (the bench) does not
durability="-c fsync=off -c full_page_writes=off"
[[ -n "${PACKWISE_PG_DURABLE:-}" ]] && durability=""
su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -o \"-h 127.0.0.1 -p $port -k '$dir' $durability\" start" >/dev/null
dsn="postgresql://postgres:$password@127.0.0.1:$port/postgres"
echo "$dsn" >"$dir/dsn"
echo "export PACKWISE_TEST_PG_DSN='$dsn'"
echo "export PACKWISE_TEST_PG_DIR='$dir'"
