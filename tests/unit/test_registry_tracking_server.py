"""A registry on an MLflow tracking server keeps model files where the server keeps them, never on local disk.

Before: `resolved()` gave every config without `registry.artifact_root` a `file://` root under storage.root,
so with `tracking_uri: http://...` each pipeline task wrote the model files to its own machine's disk
(bypassing the server's S3 `--artifacts-destination`), where no other pod or SageMaker could read them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from packwise.errors import RegistryError
from packwise.registry import open_registry
from packwise.registry.mlflow_backend import MlflowRegistry
from packwise.registry.mlflow_runs import ensure_experiment
from tests.conftest import make_config


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.com"])
def test_a_tracking_server_keeps_its_own_artifact_root(tmp_path: Path, uri: str) -> None:
    cfg = make_config(tmp_path / "state", registry={"tracking_uri": uri})
    assert cfg.registry.uses_tracking_server
    assert cfg.registry.artifact_root is None
    registry = open_registry(cfg.registry)
    assert isinstance(registry, MlflowRegistry)
    assert registry.tracking_uri == uri and registry.artifact_root is None


def test_a_local_store_still_defaults_under_storage_root(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "state")
    assert not cfg.registry.uses_tracking_server
    assert cfg.registry.artifact_root == (tmp_path / "state" / "mlartifacts").resolve().as_uri()


def test_an_explicit_artifact_root_is_kept_with_a_server(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path / "state",
        registry={"tracking_uri": "http://mlflow:5000", "artifact_root": "mlflow-artifacts:/packwise"},
    )
    assert cfg.registry.artifact_root == "mlflow-artifacts:/packwise"


def test_a_local_store_without_an_artifact_root_is_refused(tmp_path: Path) -> None:
    from packwise.config import RegistryConfig

    with pytest.raises(RegistryError, match=r"registry\.artifact_root is unset"):
        open_registry(RegistryConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))


def test_no_artifact_root_creates_the_experiment_at_the_stores_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = ensure_experiment(client, "packwise-models", None)
    location = client.get_experiment(experiment_id).artifact_location
    # the store's own default (a server: mlflow-artifacts:/...; sqlite: ./mlruns), not a path Packwise chose
    assert location.endswith(f"mlruns/{experiment_id}"), location
