"""Shared fixtures: an isolated storage root with a seeded warehouse, and a config pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from packwise.config import PackwiseConfig, parse_config

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer
    from tests.s3_server import S3Server
    from tests.sagemaker_emulator import SageMakerEmulator


def make_config(root: Path, **sections: Any) -> PackwiseConfig:
    """A resolved config whose every piece of state lives under `root`."""
    data: dict[str, Any] = {
        "storage": {"root": str(root)},
        "warehouse": {"path": str(root / "warehouse.duckdb")},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, "test config").resolved()


def seed(config: PackwiseConfig, **spec: Any) -> Any:
    from packwise.synthetic import SeedSpec, seed_warehouse
    from packwise.warehouse import open_warehouse

    config.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    with open_warehouse(config.warehouse) as warehouse:
        return seed_warehouse(warehouse, SeedSpec(**spec))


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., PackwiseConfig]:
    def factory(**sections: Any) -> PackwiseConfig:
        return make_config(tmp_path / "state", **sections)

    return factory


@pytest.fixture(scope="module")
def emulator() -> Iterator[SageMakerEmulator]:
    """moto's server with the SageMaker emulation, one per test module, and fake credentials in the
    environment for the standard credential chain (kfp.local's subprocess tasks inherit them)."""
    from tests.sagemaker_emulator import FAKE_CREDENTIALS, sagemaker_emulator

    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_CREDENTIALS.items():
            mp.setenv(key, value)
        with sagemaker_emulator() as running:
            yield running


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """moto's S3 server with an empty bucket, one per test module, and the environment of a task that uses
    it: fake credentials for the standard chain, a region, AWS_ENDPOINT_URL_S3 (subprocess tasks inherit it)."""
    from tests.s3_server import ENV, s3_server

    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        with s3_server() as running:
            mp.setenv("AWS_ENDPOINT_URL_S3", running.endpoint_url)
            yield running


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the whole session (initdb + pg_ctl in a temporary directory)."""
    from tests.postgres_server import find_bindir, postgres_server

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: run scripts/ci-postgres.sh (apt-get install postgresql)")
    with postgres_server(bindir) as server:
        yield server


@pytest.fixture
def postgres_dsn_env(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh empty database whose DSN is in $PACKWISE_TEST_WAREHOUSE_DSN; returns the variable's name."""
    monkeypatch.setenv("PACKWISE_TEST_WAREHOUSE_DSN", postgres.create_database())
    return "PACKWISE_TEST_WAREHOUSE_DSN"
