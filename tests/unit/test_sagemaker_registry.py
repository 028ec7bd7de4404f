"""The SageMaker Model Registry backend and its MLflow mirror, against moto's server.

The champion, transition and rollback rules are shared (``RegistryBackend``); these tests check what the
backend stores and sends, that the mirror follows every change, and that the gate decides the same
whichever backend holds the versions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from packwise.config import PackwiseConfig, RegistryConfig
from packwise.errors import ModelNotFoundError, RegistryError
from packwise.registry import Candidate, ModelVersion, Registry, Status, open_registry
from packwise.registry.mirrored import MirroredRegistry
from packwise.registry.mlflow_backend import CHAMPION_ALIAS, TAG_STATUS, MlflowRegistry
from packwise.registry.sagemaker_backend import SageMakerRegistry
from tests.conftest import make_config, seed
from tests.sagemaker_emulator import PACKWISE_IMAGE, XGBOOST_IMAGE, SageMakerEmulator, sagemaker_section

METRICS = {"auc": 0.91, "pr_auc": 0.72, "log_loss": 0.31, "champion_auc": 0.9}
LABEL_STATS = {"count": 1200, "positive_rate": 0.37}


def _config(
    root: Path, emulator: SageMakerEmulator, mirror: bool, prefix: str, **sagemaker: Any
) -> PackwiseConfig:
    registry: dict[str, Any] = {"backend": "sagemaker", "model_name_prefix": prefix}
    if mirror:
        registry["mirror"] = "mlflow"
    return make_config(root, registry=registry, sagemaker=sagemaker_section(emulator, **sagemaker))


@pytest.fixture
def package_type(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[5:45].strip("_")


def _register(
    registry: Registry,
    package_type: str,
    tmp_path: Path,
    key: str,
    status: Status,
    run_id: str | None = None,
    model_type: str = "xgboost",
) -> ModelVersion:
    model_file = tmp_path / f"{key}.tar.gz"
    model_file.write_bytes(f"model bytes of {key}".encode() * 50)
    return registry.register(
        Candidate(
            package_type=package_type,
            model_file=model_file,
            status=status,
            candidate_key=key,
            data_fingerprint=f"fp-{key}",
            model_type=model_type,
            metrics=METRICS,
            label_stats=LABEL_STATS,
            gate_report=f"# Gate report\n\nkey {key}\n" + "| row |\n" * 400,
            reason=f"gate decision for {key}",
            who="pipeline",
            run_id=f"run-{key}" if run_id is None else run_id,
        )
    )


def test_register_round_trip_and_the_model_package_request(
    emulator: SageMakerEmulator, tmp_path: Path, package_type: str
) -> None:
    registry = open_registry(_config(tmp_path, emulator, False, "rt").registry)
    assert isinstance(registry, SageMakerRegistry)
    before = len(emulator.bodies("CreateModelPackage"))
    v1 = _register(registry, package_type, tmp_path, "cand-1", Status.APPROVED)
    assert (v1.version, v1.status, v1.candidate_key, v1.data_fingerprint) == (1, Status.APPROVED, "cand-1", "fp-cand-1")
    assert v1.metrics == METRICS and v1.label_stats == LABEL_STATS and v1.run_id == "run-cand-1"
    assert v1.gate_report.startswith("# Gate report") and len(v1.gate_report) > 2000, "the whole report, from S3"
    assert [e.to_status for e in v1.audit] == [Status.APPROVED] and v1.reason == "gate decision for cand-1"
    assert registry.get(package_type, 1) == v1

    request = emulator.bodies("CreateModelPackage")[before]
    group = f"rt-{package_type.replace('_', '-')}"
    assert request["ModelPackageGroupName"] == group
    assert request["ModelApprovalStatus"] == "Approved"
    assert request["ClientToken"] == "cand-1"
    container = request["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == XGBOOST_IMAGE and container["ModelDataUrl"] == v1.artifact_uri
    assert re.match(r"^s3://packwise-test-bucket/packwise-test/models/[0-9a-f]{64}/model\.tar\.gz$", v1.artifact_uri)
    assert request["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    statistics = request["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    bucket, _, key = statistics["S3Uri"].removeprefix("s3://").partition("/")
    stored = json.loads(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored == METRICS
    props = request["CustomerMetadataProperties"]
    assert props["packwise.package_type"] == package_type and props["packwise.candidate_key"] == "cand-1"
    assert all(len(v) <= 256 for v in props.values())
    groups = [b["ModelPackageGroupName"] for b in emulator.bodies("CreateModelPackageGroup")]
    assert group in groups

    again = _register(registry, package_type, tmp_path, "cand-1", Status.REJECTED)
    assert again == v1 and len(emulator.bodies("CreateModelPackage")) == before + 1, "idempotent on candidate key"

    downloaded = registry.download_model(package_type, 1, tmp_path / "dl")
    assert downloaded.read_bytes() == (tmp_path / "cand-1.tar.gz").read_bytes()
    with pytest.raises(ModelNotFoundError):
        registry.get(package_type, 7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real model files of the plain xgboost type and the stacked text type (small data, few rounds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from packwise.config import FeatureConfig, ModelConfig
    from packwise.split import split_snapshot
    from packwise.synthetic import SeedSpec, generate_labels, generate_products
    from packwise.training import train

    spec = SeedSpec(seed=5, n_products=1_200, weeks=1, labels_per_week=1_000)
    snap = tmp_path_factory.mktemp("registry-models")
    products = generate_products(spec.n_products, spec.seed, weeks=spec.weeks)
    labels = generate_labels(spec, products)
    latest = labels.sort_values(["week", "observed_at"]).drop_duplicates(["product_id", "package_type"], keep="last")
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), snap / "products.parquet")
    pq.write_table(
        pa.Table.from_pandas(latest[["product_id", "package_type", "label"]], preserve_index=False),
        snap / "labels.parquet",
    )
    split_snapshot(snap, snap / "train.parquet", snap / "val.parquet", 0.8, 1, list(spec.package_types))
    out = {}
    for model_type in ("xgboost", "stacked_text"):
        out[model_type] = snap / f"{model_type}.tar.gz"
        model = ModelConfig(type=model_type, num_boost_round=10)
        train(snap / "train.parquet", snap / "val.parquet", "mailer", FeatureConfig(), model, out[model_type], "k", "f")
    out["validation"] = snap / "val.parquet"
    return out


def _described(emulator: SageMakerEmulator, group: str, version: int) -> dict[str, Any]:
    sagemaker = emulator.client("sagemaker")
    summaries = sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    arn = next(s["ModelPackageArn"] for s in summaries if s["ModelPackageVersion"] == version)
    described: dict[str, Any] = sagemaker.describe_model_package(ModelPackageName=arn)
    return described


@pytest.mark.parametrize(
    ("training_image", "model_type", "image", "content_type"),
    [
        ("builtin", "xgboost", XGBOOST_IMAGE, "text/csv"),
        ("packwise", "xgboost", PACKWISE_IMAGE, "application/x-parquet"),
        ("packwise", "stacked_text", PACKWISE_IMAGE, "application/x-parquet"),
        # trained locally with the default training image: the built-in container still cannot serve it
        ("builtin", "stacked_text", PACKWISE_IMAGE, "application/x-parquet"),
    ],
)
def test_the_model_package_names_the_image_that_serves_the_model_and_its_model_file(
    emulator: SageMakerEmulator,
    tmp_path: Path,
    trained: dict[str, Path],
    training_image: str,
    model_type: str,
    image: str,
    content_type: str,
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.models.base import predict
    from packwise.split import read_split

    package_type = f"img_{training_image}_{model_type}"
    prefix = "img"
    config = _config(
        tmp_path, emulator, False, prefix, training_image=training_image, packwise_image_uri=PACKWISE_IMAGE
    )
    registry = open_registry(config.registry)
    model_file = trained[model_type]

    def register(key: str, status: Status) -> ModelVersion:
        return registry.register(
            Candidate(
                package_type=package_type,
                model_file=model_file,
                status=status,
                candidate_key=f"{training_image}-{model_type}-{key}",  # the client token is account-wide
                data_fingerprint="fp",
                model_type=model_type,
                metrics=METRICS,
                label_stats=LABEL_STATS,
                gate_report="# Gate report",
                reason=f"gate decision for {key}",
                who="pipeline",
                run_id="run",
            )
        )

    v1 = register("first", Status.APPROVED)
    group = f"{prefix}-{package_type.replace('_', '-')}"
    described = _described(emulator, group, v1.version)
    spec = described["InferenceSpecification"]
    container = spec["Containers"][0]
    assert container["Image"] == image
    assert container["ModelDataUrl"] == v1.artifact_uri
    assert spec["SupportedContentTypes"] == [content_type] and spec["SupportedResponseMIMETypes"] == [content_type]

    # the model data is the very file Packwise trained, and it scores as the local file does
    bucket, _, key = container["ModelDataUrl"].removeprefix("s3://").partition("/")
    served = tmp_path / "served.tar.gz"
    served.write_bytes(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert served.read_bytes() == model_file.read_bytes()
    products, _ = read_split(trained["validation"], "mailer")
    theirs, ours = load_model_artifact(served), load_model_artifact(model_file)
    assert theirs.model_type == model_type
    np.testing.assert_array_equal(
        predict(theirs.booster, theirs.spec, products)[0], predict(ours.booster, ours.spec, products)[0]
    )

    # approve and rollback work on these packages and leave their container as registered
    v2 = register("second", Status.PENDING)
    registry.approve(package_type, v2.version, who="alice", reason="reviewed")
    assert registry.champion(package_type).version == v2.version  # type: ignore[union-attr]
    assert registry.rollback(package_type, who="bob", reason="regression").version == v1.version
    assert registry.get(package_type, v2.version).status == Status.REJECTED
    for version in (v1.version, v2.version):
        assert _described(emulator, group, version)["InferenceSpecification"]["Containers"][0]["Image"] == image


def test_a_model_the_builtin_container_cannot_serve_needs_packwise_image_uri_and_registers_nothing(
    emulator: SageMakerEmulator, tmp_path: Path, package_type: str
) -> None:
    registry = open_registry(_config(tmp_path, emulator, False, "noimg").registry)
    packages, groups = len(emulator.bodies("CreateModelPackage")), len(emulator.bodies("CreateModelPackageGroup"))
    unset = r"sagemaker\.packwise_image_uri is not set; set it"
    with pytest.raises(RegistryError, match=r"stacked_text reads text.*" + unset):
        _register(registry, package_type, tmp_path, "t1", Status.APPROVED, model_type="stacked_text")
    assert len(emulator.bodies("CreateModelPackage")) == packages
    assert len(emulator.bodies("CreateModelPackageGroup")) == groups
    assert registry.list_versions(package_type) == []

    packwise = open_registry(_config(tmp_path, emulator, False, "noimg2", training_image="packwise").registry)
    with pytest.raises(RegistryError, match=r"training_image: packwise.*" + unset):
        _register(packwise, package_type, tmp_path, "t2", Status.APPROVED)
    with pytest.raises(RegistryError, match="unknown model type 'nope'"):
        _register(registry, package_type, tmp_path, "t3", Status.APPROVED, model_type="nope")
    assert len(emulator.bodies("CreateModelPackage")) == packages


def test_champion_transitions_rollback_and_the_audit_trail(
    emulator: SageMakerEmulator, tmp_path: Path, package_type: str
) -> None:
    registry = open_registry(_config(tmp_path, emulator, False, "tr").registry)
    _register(registry, package_type, tmp_path, "a", Status.APPROVED)
    _register(registry, package_type, tmp_path, "b", Status.PENDING)
    _register(registry, package_type, tmp_path, "c", Status.REJECTED)
    assert registry.champion(package_type).version == 1  # type: ignore[union-attr]
    assert [v.version for v in registry.list_versions(package_type)] == [3, 2, 1]

    before = len(emulator.bodies("UpdateModelPackage"))
    approved = registry.approve(package_type, 2, who="alice", reason="checked with the carrier team")
    assert approved.status == Status.APPROVED and registry.champion(package_type).version == 2  # type: ignore[union-attr]
    update = emulator.bodies("UpdateModelPackage")[before]
    assert (
        update["ModelApprovalStatus"] == "Approved" and "checked with the carrier team" in update["ApprovalDescription"]
    )
    assert [(e.from_status, e.to_status, e.who) for e in approved.audit] == [
        (None, Status.PENDING, "pipeline"),
        (Status.PENDING, Status.APPROVED, "alice"),
    ]
    with pytest.raises(RegistryError, match="already Approved"):
        registry.approve(package_type, 2, who="alice", reason="again")

    champion = registry.rollback(package_type, who="bob", reason="damage claims up")
    assert champion.version == 1
    assert registry.get(package_type, 2).status == Status.REJECTED
    assert registry.get(package_type, 2).reason == "rolled back: damage claims up"

    # a status changed outside Packwise (SageMaker Studio) counts, and shows in the trail
    arn = next(
        s["ModelPackageArn"]
        for s in emulator.client("sagemaker").list_model_packages(
            ModelPackageGroupName=f"tr-{package_type.replace('_', '-')}"
        )["ModelPackageSummaryList"]
        if s["ModelPackageVersion"] == 3
    )
    props = emulator.client("sagemaker").describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    emulator.client("sagemaker").update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription="approved in Studio",
        CustomerMetadataProperties=props,
    )
    v3 = registry.get(package_type, 3)
    assert v3.status == Status.APPROVED and v3.audit[-1].reason == "approved in Studio"
    assert registry.champion(package_type).version == 3  # type: ignore[union-attr]


def test_the_mlflow_mirror_follows_every_version_and_status_change(
    emulator: SageMakerEmulator, tmp_path: Path, package_type: str
) -> None:
    config = _config(tmp_path, emulator, True, "mi")
    registry = open_registry(config.registry)
    assert isinstance(registry, MirroredRegistry)
    mirror = registry.mirror

    def mirrored() -> dict[str, tuple[Status, int]]:
        return {v.candidate_key: (v.status, v.version) for v in mirror.list_versions(package_type)}

    def alias() -> int | None:
        aliases = mirror.client.get_registered_model(mirror.model_name(package_type)).aliases
        return int(aliases[CHAMPION_ALIAS]) if CHAMPION_ALIAS in aliases else None

    _register(registry, package_type, tmp_path, "m1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "m2", Status.PENDING)
    assert mirrored() == {"m1": (Status.APPROVED, 1), "m2": (Status.PENDING, 2)}
    assert alias() == 1
    registry.approve(package_type, 2, who="alice", reason="looks right")
    assert mirrored()["m2"] == (Status.APPROVED, 2) and alias() == 2
    registry.rollback(package_type, who="bob", reason="regression")
    assert mirrored() == {"m1": (Status.APPROVED, 1), "m2": (Status.REJECTED, 2)} and alias() == 1
    for sm_version in registry.list_versions(package_type):
        mv = mirror.get(package_type, sm_version.version)
        assert mv.metrics == sm_version.metrics and mv.gate_report[:100] == sm_version.gate_report[:100]
        assert [e.to_status for e in mv.audit] == [e.to_status for e in sm_version.audit]
        tags = mirror.client.get_model_version(mirror.model_name(package_type), str(mv.version)).tags
        assert tags["packwise.sagemaker_version"] == str(sm_version.version) and tags[TAG_STATUS] == str(mv.status)

    # a write the mirror missed (SageMaker written directly) is caught up by sync
    primary = registry.primary
    _register(primary, package_type, tmp_path, "m3", Status.APPROVED)
    assert "m3" not in mirrored()
    assert registry.sync(package_type) == 3
    assert mirrored()["m3"] == (Status.APPROVED, 3) and alias() == 3


def test_the_first_run_that_reports_a_version_is_recorded_in_both_registries(
    emulator: SageMakerEmulator, tmp_path: Path, package_type: str
) -> None:
    registry = open_registry(_config(tmp_path, emulator, True, "rr").registry)
    assert isinstance(registry, MirroredRegistry)

    def mirrored_run() -> str | None:
        found = registry.mirror.find_by_candidate_key(package_type, "r1")
        return None if found is None else found.run_id

    v = _register(registry, package_type, tmp_path, "r1", Status.APPROVED, run_id="")
    assert v.run_id == "" and mirrored_run() == ""
    assert registry.record_run(package_type, v.version, "training-week-1").run_id == "training-week-1"
    assert registry.record_run(package_type, v.version, "training-week-1-again").run_id == "training-week-1"
    assert registry.get(package_type, v.version).run_id == "training-week-1"
    assert mirrored_run() == "training-week-1"
    assert registry.get(package_type, v.version).status == Status.APPROVED  # nothing else moved


def test_open_registry_refuses_an_unresolved_sagemaker_section() -> None:
    with pytest.raises(RegistryError, match=r"PackwiseConfig\.resolved"):
        open_registry(RegistryConfig(backend="sagemaker", tracking_uri="sqlite:///x.db", artifact_root="file:///x"))


def _week_decisions(config: PackwiseConfig, week: int, trained: dict[tuple[int, str], Any]) -> dict[str, str]:
    """One week of train -> evaluate -> compare -> register, with the registry of ``config``."""
    from packwise.lineage import candidate_key
    from packwise.training import compare, evaluate, extract, register, split, train

    record = extract(config.warehouse, config.storage.root, week, f"week{week}")
    out = config.storage.root / f"split-{week}"
    split(
        Path(record["snapshot_dir"]),
        out / "train.parquet",
        out / "validation.parquet",
        config.split,
        config.package_type_names,
    )
    decisions = {}
    for package_type in config.package_type_names:
        key = candidate_key(record["fingerprint"], package_type, "f", "s", "m")
        model = out / f"{package_type}.tar.gz"
        if (week, package_type) not in trained:  # both backends gate the very same candidate
            summary = train(
                out / "train.parquet",
                out / "validation.parquet",
                package_type,
                config.features,
                config.model,
                model,
                key,
                record["fingerprint"],
            ).summary
            trained[(week, package_type)] = (summary, model.read_bytes())
        summary, payload = trained[(week, package_type)]
        model.write_bytes(payload)
        evaluation, _ = evaluate(model, out / "validation.parquet", package_type, 0.5, config.registry, out / "scratch")
        decision = compare(summary.model_dump_json(), evaluation.model_dump_json(), config.gate)
        register(
            model,
            summary.model_dump_json(),
            evaluation.model_dump_json(),
            json.dumps(decision.to_dict()),
            config.registry,
        )
        decisions[package_type] = f"{decision.status}|{decision.reason}"
    return decisions


def test_the_gate_decides_the_same_whichever_registry_holds_the_versions(
    emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    data = {"model": {"num_boost_round": 60}}
    local = make_config(tmp_path / "mlflow", **data)
    remote = make_config(
        tmp_path / "sagemaker",
        registry={"backend": "sagemaker", "mirror": "mlflow", "model_name_prefix": "gate"},
        sagemaker=sagemaker_section(emulator),
        **data,
    )
    for config in (local, remote):
        seed(
            config,
            seed=21,
            n_products=5_000,
            weeks=3,
            labels_per_week=1_500,
            corrupt={"package_type": "mailer", "week": 3, "fraction": 1.0},
        )
    trained: dict[tuple[int, str], Any] = {}
    history = []
    for week in (1, 2, 3):
        on_mlflow = _week_decisions(local, week, trained)
        on_sagemaker = _week_decisions(remote, week, trained)
        assert on_sagemaker == on_mlflow, f"week {week}"
        history.append(on_mlflow)
    assert history[2]["mailer"].startswith("Rejected"), history[2]
    for package_type in local.package_type_names:
        ours = [(v.version, v.status) for v in open_registry(local.registry).list_versions(package_type)]
        theirs = [(v.version, v.status) for v in open_registry(remote.registry).list_versions(package_type)]
        assert ours == theirs
        mirror = MlflowRegistry(
            tracking_uri=remote.registry.tracking_uri or "",
            artifact_root=remote.registry.artifact_root or "",
            model_name_prefix="gate",
        )
        assert [(v.version, v.status) for v in mirror.list_versions(package_type)] == theirs


def test_the_registry_cli_works_on_the_sagemaker_backend(
    emulator: SageMakerEmulator, tmp_path: Path, package_type: str
) -> None:
    import yaml
    from typer.testing import CliRunner

    from packwise_app.registry_cli import registry_app

    config = _config(tmp_path, emulator, True, "cli")
    registry = open_registry(config.registry)
    _register(registry, package_type, tmp_path, "c1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "c2", Status.PENDING)
    config_file = tmp_path / "packwise.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "storage": {"root": str(tmp_path)},
                "registry": {"backend": "sagemaker", "mirror": "mlflow", "model_name_prefix": "cli"},
                "sagemaker": sagemaker_section(emulator),
                "package_types": [{"name": package_type}],
            }
        )
    )
    env = {"COLUMNS": "200"}
    listed = CliRunner().invoke(registry_app, ["list", "--type", package_type, "--config", str(config_file)], env=env)
    assert listed.exit_code == 0, listed.output
    assert "PendingManualApproval" in listed.output and "Approved" in listed.output
    approved = CliRunner().invoke(
        registry_app,
        ["approve", package_type, "2", "--reason", "checked", "--config", str(config_file)],
        env=env,
    )
    assert approved.exit_code == 0, approved.output
    assert registry.champion(package_type).version == 2  # type: ignore[union-attr]
    assert isinstance(registry, MirroredRegistry)
    assert registry.mirror.champion(package_type).version == 2  # type: ignore[union-attr]


def test_the_serving_image_follows_the_training_image_the_model_type_and_stacked_columns() -> None:
    from packwise.config import SageMakerConfig
    from packwise.errors import ConfigError
    from packwise.sagemaker.packwise_image import serving_container

    builtin = SageMakerConfig(packwise_image_uri=PACKWISE_IMAGE)
    packwise = builtin.model_copy(update={"training_image": "packwise"})
    assert serving_container(builtin, "us-east-1", "xgboost").image == XGBOOST_IMAGE
    assert serving_container(builtin, "us-east-1", "xgboost_text").image == PACKWISE_IMAGE
    # a model file with stacked columns needs Packwise's code whatever its type says
    assert serving_container(builtin, "us-east-1", "xgboost", stacked=True).image == PACKWISE_IMAGE
    for model_type in ("xgboost", "xgboost_text", "stacked_text"):
        assert serving_container(packwise, "us-east-1", model_type).content_type == "application/x-parquet"
    mirror = builtin.model_copy(update={"xgboost_image_uri": "mirror.example/xgboost:3.0-5"})
    assert serving_container(mirror, "us-east-1", "xgboost").image == "mirror.example/xgboost:3.0-5"
    with pytest.raises(ConfigError, match="unknown model type 'nope'"):
        serving_container(packwise, "us-east-1", "nope")
