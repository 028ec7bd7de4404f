"""`mlflow models serve` of a champion answers with the same probabilities as Packwise's scorer.

Starts the real scoring server (``--env-manager local``: this Python, no virtualenv built) on 127.0.0.1 and
a free port, after registering two weeks of small real models, and POSTs raw product rows to /invocations.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packwise.artifact import load_model_artifact
from packwise.models.base import predict
from tests.registry_models import PRODUCT_COLUMNS, products, two_week_registry

STARTUP_SECONDS = 180


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[Any], log: Path, seconds: float = STARTUP_SECONDS) -> None:
    """Waits until ``url`` answers 200, failing with the server's log if it exits or never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds}s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def mlflow_server(store_uri: str, artifacts: str, log: Path) -> Iterator[str]:
    """`mlflow server` on a free port, its store at ``store_uri``, artifacts proxied to ``artifacts`` (on the
    moto S3 when $AWS_ENDPOINT_URL names it)."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", store_uri, "--artifacts-destination", artifacts, "--workers", "1"]
    env = dict(os.environ)
    if os.environ.get("AWS_ENDPOINT_URL"):
        env["MLFLOW_S3_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # its job runner: seven more processes, unused here
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def sqlalchemy_uri(dsn: str) -> str:
    """The libpq DSN as SQLAlchemy's URL on psycopg 3 (the driver the dev extra installs)."""
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return two_week_registry(tmp_path_factory.mktemp("two-weeks"))


@pytest.fixture(scope="module")
def served(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri, "MLFLOW_REGISTRY_URI": registry.tracking_uri}
    # `mlflow models serve` runs `exec uvicorn` through bash, found on PATH: this environment's scripts first,
    # as for a user who activated it (a fresh clone's CI runs .venv/bin/pytest with no venv on PATH)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    uri = f"models:/{registry.model_name('mailer')}@champion"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_served_champion_answers_like_packwise(registry: Any, served: str, tmp_path: Path) -> None:
    rows = products(40, seed=99)[PRODUCT_COLUMNS]
    body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
    request = urllib.request.Request(
        f"{served}/invocations", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    got = np.array([row["suitability_probability"] for row in answer["predictions"]])

    champion = registry.champion("mailer")
    assert champion is not None and champion.version == 2
    model = load_model_artifact(registry.download_model("mailer", champion.version, tmp_path))
    want, _ = predict(model.booster, model.spec, rows)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_served_model_refuses_rows_missing_a_column(served: str) -> None:
    rows = products(3, seed=5)[PRODUCT_COLUMNS].drop(columns=["weight_kg"])
    body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
    request = urllib.request.Request(
        f"{served}/invocations", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 400
    assert "weight_kg" in err.value.read().decode()
