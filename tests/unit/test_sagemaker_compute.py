"""Training and batch transform against moto's server, with the XGBoost container emulated.

Asserts the requests Packwise sends (job definitions, channels, content types, transform settings), the
data it stages (CSV, label or id first, no header), the resume behaviour (no second job), that SageMaker
scoring equals local scoring, and that model files move both ways between SageMaker and Packwise.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from packwise.config import ComputeConfig, PackwiseConfig, SageMakerConfig
from packwise.errors import InjectedFault
from packwise.sagemaker.session import Clients, open_clients
from tests.conftest import make_config, seed
from tests.sagemaker_emulator import (
    REGION,
    ROLE_ARN,
    XGBOOST_IMAGE,
    SageMakerEmulator,
    sagemaker_section,
)
from tests.split_data import extracted_splits

# Every step's work on SageMaker; the steps open their clients from the `sagemaker` section (the emulator).
SAGEMAKER = ComputeConfig(training="sagemaker", evaluation="sagemaker", inference="sagemaker")


@pytest.fixture(autouse=True)
def xgboost_engine_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """SageMaker's built-in container scores with XGBoost: score with XGBoost here too, to compare like with
    like bit for bit (oneDAL agrees to 1e-6, tests/unit/test_engine.py)."""
    monkeypatch.setattr("packwise.engine.onedal_available", lambda: False)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory, emulator: SageMakerEmulator) -> PackwiseConfig:
    config = make_config(
        tmp_path_factory.mktemp("sm-compute") / "state",
        sagemaker=sagemaker_section(emulator),
        model={"num_boost_round": 30},
    )
    seed(config, seed=5, n_products=2_500, weeks=1, labels_per_week=1_200)
    return config


@pytest.fixture(scope="module")
def splits(cfg: PackwiseConfig) -> dict[str, Any]:
    return extracted_splits(cfg, "sm-unit")


@pytest.fixture(scope="module")
def clients(cfg: PackwiseConfig) -> Clients:
    return open_clients(cfg.sagemaker)


def _s3_text(emulator: SageMakerEmulator, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return str(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def _s3_bytes(emulator: SageMakerEmulator, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _s3_objects(emulator: SageMakerEmulator, uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    listed = emulator.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [f"s3://{bucket}/{o['Key']}" for o in listed.get("Contents", [])]


def _train(cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, package_type: str, out: Path) -> Any:
    from packwise.lineage import candidate_key
    from packwise.training import train

    key = candidate_key(
        splits["fingerprint"],
        package_type,
        cfg.section_json("features"),
        cfg.section_json("split"),
        cfg.section_json("model"),
    )
    return train(
        splits["train"],
        splits["validation"],
        package_type,
        cfg.features,
        cfg.model,
        out,
        key,
        splits["fingerprint"],
        SAGEMAKER,
        cfg.sagemaker,
    )


def test_training_job_request_channels_and_staged_csv(
    cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.split import read_split

    before = len(emulator.bodies("CreateTrainingJob"))
    result = _train(cfg, splits, clients, "mailer", tmp_path / "model.tar.gz")
    requests = emulator.bodies("CreateTrainingJob")[before:]
    assert len(requests) == 1
    job_name = result.details["sagemaker_training_job"]
    request = requests[0]
    assert request["TrainingJobName"] == job_name
    assert job_name.startswith(f"pw-train-mailer-{splits['fingerprint'][:12]}-")
    assert request["AlgorithmSpecification"] == {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"}
    assert request["RoleArn"] == ROLE_ARN
    assert request["HyperParameters"]["objective"] == "binary:logistic"
    assert request["HyperParameters"]["eval_metric"] == "logloss"
    assert request["HyperParameters"]["num_round"] == "30"
    assert request["HyperParameters"]["max_depth"] == "4"
    assert request["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://packwise-test-bucket/packwise-test/training/output"
    assert {"Key": "packwise:package-type", "Value": "mailer"} in request["Tags"]
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    for name, channel in channels.items():
        assert channel["ContentType"] == "text/csv"
        assert channel["CompressionType"] == "None"
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3DataType"] == "S3Prefix" and source["S3DataDistributionType"] == "FullyReplicated"
        assert source["S3Uri"].endswith(f"/{name}/")
        files = _s3_objects(emulator, source["S3Uri"])
        assert len(files) == 1
        frame = pd.read_csv(io.StringIO(_s3_text(emulator, files[0])), header=None)
        _, labels = read_split(splits[name], "mailer")
        # no header (the first line is data), label first and exactly the split's labels
        assert len(frame) == len(labels)
        assert frame[0].tolist() == labels.astype(int).tolist()
        assert frame.dtypes.map(lambda d: d.kind in "if").all(), "every column is a number"
        assert frame.shape[1] == 1 + result.summary.n_features

    # the model comes back from SageMaker's layout, stamped with the recipe, trees unchanged
    model = load_model_artifact(tmp_path / "model.tar.gz")
    assert model.package_type == "mailer" and len(model.spec.names) == result.summary.n_features
    raw_uri = result.details["sagemaker_model_data"]
    assert raw_uri == f"s3://packwise-test-bucket/packwise-test/training/output/{job_name}/output/model.tar.gz"
    raw = tmp_path / "raw.tar.gz"
    raw.write_bytes(_s3_bytes(emulator, raw_uri))
    sm_model = load_model_artifact(raw, spec=model.spec)
    products, _ = read_split(splits["validation"], "mailer")
    from packwise.models.base import predict

    ours, _ = predict(model.booster, model.spec, products)
    theirs, _ = predict(sm_model.booster, sm_model.spec, products)
    assert np.array_equal(ours, theirs)


def test_a_step_interrupted_after_creating_its_job_attaches_when_run_again(
    cfg: PackwiseConfig,
    splits: dict[str, Any],
    clients: Clients,
    emulator: SageMakerEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = len(emulator.bodies("CreateTrainingJob"))
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "sagemaker-job-created/bag")
    with pytest.raises(InjectedFault):
        _train(cfg, splits, clients, "bag", tmp_path / "first.tar.gz")
    assert len(emulator.bodies("CreateTrainingJob")) == before + 1, "the job was created before the interruption"
    monkeypatch.delenv("PACKWISE_FAIL_TASK")
    again = _train(cfg, splits, clients, "bag", tmp_path / "again.tar.gz")
    assert len(emulator.bodies("CreateTrainingJob")) == before + 1, "no second training job"
    assert again.details["sagemaker_training_job"] == emulator.bodies("CreateTrainingJob")[-1]["TrainingJobName"]
    assert (tmp_path / "again.tar.gz").is_file()


def test_sagemaker_evaluation_equals_local_evaluation_and_sends_transform_settings(
    cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.lineage import candidate_key
    from packwise.training import evaluate, train

    key = candidate_key(splits["fingerprint"], "box", "f", "s", "m")
    model_file = tmp_path / "box.tar.gz"
    trained = train(
        splits["train"], splits["validation"], "box", cfg.features, cfg.model, model_file, key, splits["fingerprint"]
    )
    assert trained.summary.n_features > 0 and trained.details == {}, "local training runs no job"
    fingerprint = splits["fingerprint"]
    local, no_jobs = evaluate(model_file, splits["validation"], "box", 0.5, cfg.registry, tmp_path / "a", fingerprint)
    assert no_jobs == []
    before = len(emulator.bodies("CreateTransformJob"))
    remote, jobs = evaluate(
        model_file, splits["validation"], "box", 0.5, cfg.registry, tmp_path / "b", fingerprint,
        SAGEMAKER, cfg.sagemaker,
    )
    assert remote.candidate == local.candidate, "same probabilities, same metrics, whichever compute scored them"
    assert remote.champion is None and local.champion is None

    requests = emulator.bodies("CreateTransformJob")[before:]
    assert [r["TransformJobName"] for r in requests] == jobs
    request = requests[0]
    assert request["BatchStrategy"] == "MultiRecord"
    assert request["MaxPayloadInMB"] == 6
    assert request["TransformInput"]["SplitType"] == "Line"
    assert request["TransformInput"]["ContentType"] == "text/csv"
    assert request["TransformOutput"]["AssembleWith"] == "Line"
    assert request["TransformOutput"]["Accept"] == "text/csv"
    assert request["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}
    assert request["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    model_request = next(m for m in emulator.bodies("CreateModel") if m["ModelName"] == request["ModelName"])
    assert model_request["PrimaryContainer"]["Image"] == XGBOOST_IMAGE
    assert model_request["ExecutionRoleArn"] == ROLE_ARN
    staged = _s3_objects(emulator, request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    first_line = _s3_text(emulator, staged[0]).split("\n", 1)[0].split(",")
    assert first_line[0].startswith("P"), "the product id leads each input line (no header)"
    assert len(first_line) == 1 + len(load_model_artifact(tmp_path / "box.tar.gz").spec.names)

    # the same step again attaches to its finished job: no second transform job, same result
    again, jobs_again = evaluate(
        model_file, splits["validation"], "box", 0.5, cfg.registry, tmp_path / "c", fingerprint,
        SAGEMAKER, cfg.sagemaker,
    )
    assert jobs_again == jobs and len(emulator.bodies("CreateTransformJob")) == before + 1
    assert again.candidate == remote.candidate


def test_transform_keeps_product_ids_through_several_files(
    cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.models.base import predict
    from packwise.sagemaker.transform import TransformModel, score_with_transform
    from packwise.split import read_split
    from packwise.training import train

    model_file = tmp_path / "m.tar.gz"
    train(splits["train"], splits["validation"], "own_container", cfg.features, cfg.model, model_file, "k", "fp")
    model = load_model_artifact(tmp_path / "m.tar.gz")
    products, _ = read_split(splits["validation"], "own_container")
    shuffled = products.sample(frac=1.0, random_state=3).reset_index(drop=True)
    small_files = cfg.sagemaker.model_copy(update={"transform_rows_per_file": 100})
    prob, runs = score_with_transform(
        clients,
        small_files,
        shuffled,
        [TransformModel("p", "own_container", tmp_path / "m.tar.gz", model.spec)],
        "score",
        "fp-shuffled",
    )
    local, _ = predict(model.booster, model.spec, shuffled)
    assert np.array_equal(prob["p"], local.astype(np.float32))
    source = runs[0].described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert len(_s3_objects(emulator, source)) >= 2, "several input files, ids still matched"


FOREIGN_TRAINER = r"""
import io, sys, tarfile
import numpy as np, pandas as pd, xgboost as xgb
data = pd.read_csv(sys.argv[1], header=None).to_numpy(dtype=np.float32)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(data[:, 1:], label=data[:, 0]), 25)
booster.save_model(sys.argv[2] + "/xgboost-model.ubj")
with open(sys.argv[2] + "/xgboost-model.ubj", "rb") as fh:
    raw = fh.read()
with tarfile.open(sys.argv[2] + "/model.tar.gz", "w:gz") as tar:
    info = tarfile.TarInfo("xgboost-model"); info.size = len(raw); tar.addfile(info, io.BytesIO(raw))
np.save(sys.argv[2] + "/predictions.npy", booster.predict(xgb.DMatrix(data[:, 1:])))
"""


def test_a_model_made_by_another_process_in_sagemaker_layout_scores_locally_identically(
    cfg: PackwiseConfig, splits: dict[str, Any], tmp_path: Path
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.features import build_features, fit_feature_spec
    from packwise.models.base import predict
    from packwise.sagemaker.csv_format import write_training_csv
    from packwise.split import read_split

    products, labels = read_split(splits["train"], "box")
    spec = fit_feature_spec(products, cfg.features)
    write_training_csv(build_features(products, spec), labels, tmp_path / "train.csv")
    script = tmp_path / "trainer.py"
    script.write_text(FOREIGN_TRAINER)
    subprocess.run([sys.executable, str(script), str(tmp_path / "train.csv"), str(tmp_path)], check=True)

    loaded = load_model_artifact(tmp_path / "model.tar.gz", spec=spec)  # no Packwise attributes inside
    assert loaded.package_type is None
    local, _ = predict(loaded.booster, loaded.spec, products)
    theirs = np.load(tmp_path / "predictions.npy")
    assert np.array_equal(local.astype(np.float32), theirs)

    from packwise.scoring import Scorer, ScoringModel

    scorer = Scorer([ScoringModel("box", 1, loaded.booster, loaded.spec, 0.5)], threads=1)
    prob, _ = scorer.predict(scorer.features(products))
    assert np.array_equal(prob[:, 0], theirs)


def test_text_model_types_are_refused_before_anything_is_written(
    cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    from packwise.errors import ConfigError
    from packwise.training import train

    before = len(emulator.requests)
    text_model = cfg.model.model_copy(update={"type": "xgboost_text"})
    with pytest.raises(ConfigError, match=r"set sagemaker\.training_image: packwise"):
        train(
            splits["train"],
            splits["validation"],
            "box",
            cfg.features,
            text_model,
            tmp_path / "m.tar.gz",
            "k",
            "fp",
            SAGEMAKER,
            cfg.sagemaker,
        )
    assert len(emulator.requests) == before
    assert not (tmp_path / "m.tar.gz").exists()


def test_missing_credentials_say_where_they_come_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from packwise.sagemaker.errors import SageMakerError
    from packwise.sagemaker.session import upload_model_file

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = SageMakerConfig(region=REGION, bucket="b-x", endpoint_url="http://127.0.0.1:9")
    (tmp_path / "m").write_bytes(b"x")
    with pytest.raises(SageMakerError, match="no AWS credentials found"):
        upload_model_file(open_clients(config), config, tmp_path / "m")


def _trained_plan(cfg: PackwiseConfig, splits: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A scoring plan of two freshly trained models (own_container v1, box v2)."""
    from packwise.training import train

    plan: dict[str, Any] = {"package_types": ["own_container", "box"], "models": {}}
    for version, package_type in enumerate(plan["package_types"], start=1):
        path = tmp_path / f"{package_type}.tar.gz"
        train(splits["train"], splits["validation"], package_type, cfg.features, cfg.model, path, package_type, "fp")
        plan["models"][package_type] = {"path": str(path), "version": version, "threshold": 0.5}
    return plan


def test_a_shard_scored_by_batch_transform_equals_the_local_scorer(
    cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from packwise.inference import load_scoring_models, score_shard
    from packwise.scoring import Scorer

    plan = _trained_plan(cfg, splits, tmp_path)
    shard = tmp_path / "shard-00003.parquet"
    shard.write_bytes(splits["validation"].read_bytes())

    local_stats = Scorer(load_scoring_models(plan), threads=1).score_file(shard, tmp_path / "local.parquet")
    before = len(emulator.bodies("CreateTransformJob"))
    stats = score_shard(shard, plan, SAGEMAKER, cfg.sagemaker, cfg.inference, tmp_path / "remote.parquet")

    local = pq.read_table(tmp_path / "local.parquet")
    remote = pq.read_table(tmp_path / "remote.parquet")
    assert remote.schema == local.schema
    assert remote.to_pydict() == local.to_pydict(), "same ids, probabilities and recommendations"
    assert stats["shard"] == "shard-00003" and stats["rows"] == local_stats.rows == local.num_rows
    assert stats["recommended"] == local_stats.recommended and stats["unseen"] == local_stats.unseen

    requests = emulator.bodies("CreateTransformJob")[before:]
    assert sorted(r["TransformJobName"].split("-")[2] for r in requests) == ["box", "own"]
    sources = {r["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] for r in requests}
    recipes = {m.spec.to_json() for m in load_scoring_models(plan)}
    assert len(sources) == len(recipes), "one staged input per distinct feature recipe"

    again = score_shard(shard, plan, SAGEMAKER, cfg.sagemaker, cfg.inference, tmp_path / "again.parquet")
    assert len(emulator.bodies("CreateTransformJob")) == before + 2, "a retried shard attaches to its jobs"
    assert again["recommended"] == stats["recommended"]


def test_a_shard_scored_on_sagemaker_takes_the_cost_policy_as_local_scoring_does(
    cfg: PackwiseConfig, splits: dict[str, Any], clients: Clients, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    """inference.policy cost: the jobs' probabilities give the lowest-expected-cost picks and the expected
    cost the local scorer writes, not the threshold rule."""
    import pyarrow.parquet as pq

    from packwise.inference import load_scoring_models, score_shard
    from packwise.recommendation import cost_model
    from packwise.scoring import Scorer

    plan = _trained_plan(cfg, splits, tmp_path)
    shard = tmp_path / "shard-00004.parquet"
    shard.write_bytes(splits["validation"].read_bytes())
    by_cost = cfg.inference.model_copy(
        update={"policy": "cost", "package_costs": {"own_container": 0.0, "box": 1.5}, "damage_cost": 4.0}
    )
    cost = cost_model("cost", by_cost.package_costs, by_cost.damage_cost, plan["package_types"])
    local = Scorer(load_scoring_models(plan), threads=1, cost=cost).score_file(shard, tmp_path / "local.parquet")
    threshold = Scorer(load_scoring_models(plan), threads=1).score_file(shard, tmp_path / "threshold.parquet")
    assert local.recommended != threshold.recommended  # the two policies pick differently on these rows

    stats = score_shard(shard, plan, SAGEMAKER, cfg.sagemaker, by_cost, tmp_path / "remote.parquet")
    remote = pq.read_table(tmp_path / "remote.parquet")
    assert remote.to_pydict() == pq.read_table(tmp_path / "local.parquet").to_pydict()
    assert stats["recommended"] == local.recommended
    assert stats["expected_cost"] == pytest.approx(local.expected_cost, rel=1e-9)
