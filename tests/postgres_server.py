"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl under a temporary directory.

Needs Debian's postgresql package (`scripts/ci-postgres.sh` installs it); the fixtures skip with that
advice when no initdb is found. The cluster runs as user postgres when we are root (initdb refuses
root), listens on 127.0.0.1 on a free port and asks for a password over TCP.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def dsn(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{self.user}:{password or self.password}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its DSN."""
        import adbc_driver_postgresql.dbapi as adbc

        name = f"t_{uuid.uuid4().hex[:12]}"
        with adbc.connect(self.dsn()) as con:
            con.adbc_connection.set_autocommit(True)  # CREATE DATABASE cannot run in a transaction
            with con.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server(bindir: Path) -> Iterator[PostgresServer]:
    """Starts a cluster, yields it, stops it and removes its files."""
    root = Path(tempfile.mkdtemp(prefix="packwise-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(12)
    pwfile = root / "pwfile"
    pwfile.write_text(password)
    if as_postgres:
        shutil.chown(pwfile, "postgres")
    data = root / "data"
    port = _free_port()
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
         "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    subprocess.run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield PostgresServer("127.0.0.1", port, "postgres", password)
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
