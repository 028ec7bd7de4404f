"""What MLflow users see of the registry: MLflow Models, training runs, one truth, drift verify and repair.

Real small XGBoost models on a real local sqlite store (one per module: migrations are slow).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from packwise.artifact import load_model_artifact
from packwise.errors import RegistryError
from packwise.models.base import predict
from packwise.registry import Status
from packwise.registry.mlflow_backend import CHAMPION_ALIAS, MlflowRegistry
from packwise.registry.mlflow_store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, KFP_RUN_TAG, PARENT_RUN_ID_TAG
from tests.registry_models import PRODUCT_COLUMNS, candidate, train_model


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-mlflow")


@pytest.fixture(scope="module")
def registry(store: Path) -> MlflowRegistry:
    return MlflowRegistry(tracking_uri=f"sqlite:///{store / 'mlflow.db'}", artifact_root=(store / "art").as_uri())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, pd.DataFrame, np.ndarray]]:
    root = tmp_path_factory.mktemp("models")
    return {seed: train_model(root / f"model-{seed}.tar.gz", "mailer", seed) for seed in (1, 2, 3)}


@pytest.fixture
def package_type(request: pytest.FixtureRequest) -> str:
    """A package type of its own per test, so tests sharing the store never see each other's versions."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())
    return f"{name[:48]}_{zlib.crc32(name.encode()):08x}"


def _client(registry: MlflowRegistry) -> MlflowClient:
    return registry.client


def test_a_version_is_an_mlflow_model_scoring_like_packwise(
    registry: MlflowRegistry, package_type: str, trained: dict[int, Any], tmp_path: Path
) -> None:
    import mlflow.pyfunc
    from mlflow.models import Model

    model_file, rows, labels = trained[1]
    version = registry.register(candidate(model_file, package_type, "k1", Status.APPROVED, rows, labels))
    uri = f"models:/{registry.model_name(package_type)}@{CHAMPION_ALIAS}"

    previous = mlflow.get_registry_uri(), mlflow.get_tracking_uri()
    mlflow.set_registry_uri(registry.tracking_uri)
    mlflow.set_tracking_uri(registry.tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
        info = Model.load(uri)
    finally:
        mlflow.set_registry_uri(previous[0])
        mlflow.set_tracking_uri(previous[1])
    fresh = rows[PRODUCT_COLUMNS].sample(50, random_state=3).reset_index(drop=True)
    got = loaded.predict(fresh)["suitability_probability"].to_numpy()
    packwise_model = load_model_artifact(model_file)
    want, _ = predict(packwise_model.booster, packwise_model.spec, fresh)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)

    assert info.signature is not None
    assert info.signature.inputs.input_names() == PRODUCT_COLUMNS
    assert info.signature.outputs.input_names() == ["suitability_probability"]
    assert info.saved_input_example_info is not None
    requirements = (Path(loaded.metadata.get_model_info().model_uri).name, loaded.metadata.flavors["python_function"])
    assert requirements[1]["loader_module"] == "mlflow.pyfunc.model"

    # The SageMaker-layout file beside it is byte-identical to what was registered.
    downloaded = registry.download_model(package_type, version.version, tmp_path / "dl")
    assert downloaded.read_bytes() == model_file.read_bytes()
    assert version.artifact_uri.endswith("/model/artifacts/model.tar.gz")


def test_the_model_pins_its_requirements(registry: MlflowRegistry, package_type: str, trained: dict[int, Any]) -> None:
    model_file, rows, labels = trained[1]
    version = registry.register(candidate(model_file, package_type, "k1", Status.PENDING, rows, labels))
    run_id = _client(registry).get_model_version(registry.model_name(package_type), str(version.version)).run_id
    assert run_id is not None
    local = Path(_client(registry).download_artifacts(run_id, "model/requirements.txt"))
    pins = local.read_text().split()
    assert {p.split("==")[0] for p in pins} >= {"mlflow", "xgboost", "pandas", "numpy", "pydantic"}
    assert all("==" in p for p in pins), pins


def test_training_is_a_nested_run_with_params_metrics_dataset_and_artifacts(
    registry: MlflowRegistry, package_type: str, trained: dict[int, Any]
) -> None:
    model_file, rows, labels = trained[1]
    version = registry.register(
        candidate(model_file, package_type, "k1", Status.APPROVED, rows, labels, week=7, pipeline_run_id="kfp-77")
    )
    client = _client(registry)
    mv = client.get_model_version(registry.model_name(package_type), str(version.version))
    assert mv.run_id is not None
    run = client.get_run(mv.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED"
    assert params["week"] == "7" and params["data_fingerprint"] == version.data_fingerprint
    assert params["model.max_depth"] == "3" and params["split.validation_fraction"] == "0.2"
    assert "length_cm" in params["features.numeric"] and params["features.categorical"] == "category,material"
    assert int(params["labels.positive"]) + int(params["labels.negative"]) == len(labels)
    assert metrics["auc"] == pytest.approx(version.metrics["auc"])
    assert metrics["label_positive_rate"] == pytest.approx(float(labels.mean()))
    assert tags["packwise.week"] == "7" and tags[KFP_RUN_TAG] == "kfp-77"
    artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
    assert {"gate_report.md", "roc_curve.png", "confusion_matrix.png", "model"} <= artifacts
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [version.data_fingerprint]

    parent = client.get_run(tags[PARENT_RUN_ID_TAG])
    assert parent.data.tags[KFP_RUN_TAG] == "kfp-77" and parent.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND

    # Another package type of the same pipeline run nests under the same parent.
    other = registry.register(
        candidate(model_file, f"{package_type}_b", "k1", Status.REJECTED, rows, labels, pipeline_run_id="kfp-77")
    )
    other_mv = client.get_model_version(registry.model_name(other.package_type), "1")
    assert other_mv.run_id is not None
    assert client.get_run(other_mv.run_id).data.tags[PARENT_RUN_ID_TAG] == parent.info.run_id

    # The version itself carries a few short tags, and its description is the one-line decision.
    assert set(mv.tags) == {
        "packwise.status",
        "packwise.package_type",
        "packwise.week",
        "packwise.data_fingerprint",
        "packwise.candidate_key",
    }
    assert mv.description == "approved: all criteria pass"


def _consistent(registry: MlflowRegistry, package_type: str) -> None:
    assert registry.verify(package_type) == []
    client = _client(registry)
    experiment = client.get_experiment_by_name(registry.experiment_name)
    assert experiment is not None
    running = client.search_runs(
        [experiment.experiment_id], f"tags.`packwise.package_type` = '{package_type}' and attributes.status = 'RUNNING'"
    )
    assert running == []
    champion = registry.champion(package_type)
    newest = max((v.version for v in registry.list_versions(package_type) if v.status == Status.APPROVED), default=None)
    assert (champion.version if champion else None) == newest == registry.alias_version(package_type)


@pytest.mark.parametrize("point", ["after_create_run", "after_create_model_version", "after_alias"])
def test_a_kill_at_any_step_of_register_is_repaired_by_the_rerun(
    registry: MlflowRegistry,
    package_type: str,
    trained: dict[int, Any],
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    model_file, rows, labels = trained[1]
    first = registry.register(candidate(model_file, package_type, "k1", Status.APPROVED, rows, labels))
    new_file, new_rows, new_labels = trained[2]
    doomed = candidate(new_file, package_type, "k2", Status.APPROVED, new_rows, new_labels)

    # A SIGKILL runs no cleanup: fail at the point and skip the discard.
    with monkeypatch.context() as patch:
        patch.setenv("PACKWISE_FAIL_TASK", f"register.{point}/{package_type}")
        patch.setattr(MlflowRegistry, "_discard", lambda *args, **kwargs: None)
        with pytest.raises(RegistryError, match="failing on purpose"):
            registry.register(doomed)

    rerun = registry.register(doomed)
    assert rerun.candidate_key == "k2" and rerun.status == Status.APPROVED
    assert [v.candidate_key for v in registry.list_versions(package_type)] == ["k2", "k1"]
    assert registry.champion(package_type) == registry.get(package_type, rerun.version)
    assert first.version != rerun.version
    _consistent(registry, package_type)


def test_every_status_change_moves_tags_description_and_alias_together(
    registry: MlflowRegistry, package_type: str, trained: dict[int, Any]
) -> None:
    model_file, rows, labels = trained[1]
    registry.register(candidate(model_file, package_type, "k1", Status.APPROVED, rows, labels))
    v2 = registry.register(candidate(trained[2][0], package_type, "k2", Status.APPROVED, rows, labels))
    registry.rollback(package_type, who="alice", reason="v2 mislabels fragile goods")

    client = _client(registry)
    mv = client.get_model_version(registry.model_name(package_type), str(v2.version))
    assert mv.tags["packwise.status"] == "Rejected"
    assert mv.description == "Rejected: rolled back: v2 mislabels fragile goods"
    assert mv.run_id is not None
    assert client.get_run(mv.run_id).data.tags["packwise.status"] == "Rejected"
    assert registry.alias_version(package_type) == 1
    _consistent(registry, package_type)


def test_verify_reports_ui_edits_and_repair_puts_them_back_audited(
    registry: MlflowRegistry, package_type: str, trained: dict[int, Any]
) -> None:
    model_file, rows, labels = trained[1]
    registry.register(candidate(model_file, package_type, "k1", Status.APPROVED, rows, labels))
    registry.register(candidate(trained[2][0], package_type, "k2", Status.REJECTED, rows, labels))
    name = registry.model_name(package_type)
    client = _client(registry)
    assert registry.verify(package_type) == []

    client.set_registered_model_alias(name, CHAMPION_ALIAS, "2")  # one click in the UI
    client.set_model_version_tag(name, "2", "packwise.status", "Approved")  # an edit in the UI
    drift = registry.verify(package_type)
    assert {(d.version, d.what) for d in drift} == {(1, "champion alias"), (2, "version tag")}
    with pytest.raises(RegistryError, match=r"in drift.*packwise registry verify --repair"):
        registry.champion(package_type)  # what inference resolves: refused

    repaired = registry.repair(who="bob", package_type=package_type)
    assert repaired == drift
    assert registry.verify(package_type) == []
    assert registry.alias_version(package_type) == 1
    v2 = registry.get(package_type, 2)
    assert v2.status == Status.REJECTED
    assert v2.audit[-1].action == "repair" and v2.audit[-1].who == "bob"
    assert "version tag was 'Approved'" in v2.audit[-1].reason
    assert v2.reason == "rejected: auc below floor"  # the decision is still the last status change
    assert registry.get(package_type, 1).audit[-1].action == "repair"
    champion = registry.champion(package_type)
    assert champion is not None and champion.version == 1
