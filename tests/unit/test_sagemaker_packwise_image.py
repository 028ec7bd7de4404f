"""Text model types on SageMaker with ``sagemaker.training_image: packwise``, against moto's server.

The emulator runs the container entry on the staged inputs laid out as SageMaker mounts them, so these
tests check both the requests (image, parquet channels, hyperparameters, Processing inputs/outputs and
AppSpecification) and that what comes back equals local training and scoring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from packwise.config import ComputeConfig, PackwiseConfig
from tests.conftest import make_config, seed
from tests.sagemaker_emulator import PACKWISE_IMAGE, ROLE_ARN, SageMakerEmulator, sagemaker_section
from tests.split_data import extracted_splits

SAGEMAKER = ComputeConfig(training="sagemaker", evaluation="sagemaker", inference="sagemaker")
TEXT_TYPES = ["xgboost_text", "stacked_text"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory, emulator: SageMakerEmulator) -> PackwiseConfig:
    config = make_config(
        tmp_path_factory.mktemp("sm-packwise") / "state",
        sagemaker=sagemaker_section(emulator, training_image="packwise", packwise_image_uri=PACKWISE_IMAGE),
        model={"num_boost_round": 20},
    )
    seed(config, seed=9, n_products=1_500, weeks=1, labels_per_week=900)
    return config


@pytest.fixture(scope="module")
def splits(cfg: PackwiseConfig) -> dict[str, Any]:
    return extracted_splits(cfg, "sm-packwise")


def _s3_keys(emulator: SageMakerEmulator, uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    listed = emulator.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


@pytest.mark.parametrize("model_type", TEXT_TYPES)
def test_a_text_model_trains_evaluates_and_scores_on_packwise_image_like_locally(
    cfg: PackwiseConfig, splits: dict[str, Any], emulator: SageMakerEmulator, tmp_path: Path, model_type: str
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.inference import load_scoring_models, score_shard
    from packwise.scoring import Scorer
    from packwise.training import evaluate, train

    model = cfg.model.model_copy(update={"type": model_type})
    fingerprint = splits["fingerprint"]
    args = (splits["train"], splits["validation"], "box", cfg.features, model)
    before = len(emulator.requests)
    remote = train(*args, tmp_path / "sm.tar.gz", f"key-{model_type}", fingerprint, SAGEMAKER, cfg.sagemaker)
    local = train(*args, tmp_path / "local.tar.gz", f"key-{model_type}", fingerprint)
    assert remote.summary.model_dump(exclude={"seconds"}) == local.summary.model_dump(exclude={"seconds"})
    assert (tmp_path / "sm.tar.gz").read_bytes() == (tmp_path / "local.tar.gz").read_bytes(), (
        "the same model file, byte for byte: the container ran the local trainer"
    )
    assert load_model_artifact(tmp_path / "sm.tar.gz").model_type == model_type

    (request,) = [b for op, b in emulator.requests[before:] if op == "CreateTrainingJob"]
    assert request["TrainingJobName"] == remote.details["sagemaker_training_job"]
    assert request["AlgorithmSpecification"] == {"TrainingImage": PACKWISE_IMAGE, "TrainingInputMode": "File"}
    assert request["RoleArn"] == ROLE_ARN
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    assert {c["ContentType"] for c in channels.values()} == {"application/x-parquet"}
    hyper = request["HyperParameters"]
    assert set(hyper) == {"package_type", "model", "features"} and hyper["package_type"] == "box"
    assert json.loads(hyper["model"])["type"] == model_type and json.loads(hyper["model"])["num_boost_round"] == 20
    assert json.loads(hyper["features"]) == json.loads(cfg.features.model_dump_json())
    train_keys = _s3_keys(emulator, channels["train"]["DataSource"]["S3DataSource"]["S3Uri"])
    assert [k.rsplit("/", 1)[-1] for k in train_keys] == ["part-00000.parquet"]
    staged = pq.read_schema(splits["train"]).names
    body = emulator.client("s3").get_object(Bucket=cfg.sagemaker.bucket, Key=train_keys[0])["Body"].read()
    (tmp_path / "staged.parquet").write_bytes(body)
    columns = pq.read_schema(tmp_path / "staged.parquet").names
    assert cfg.features.text in columns and "label__box" in columns and "label__bag" not in columns
    assert set(columns) < set(staged)

    # evaluation: one Processing job, the same metrics as local scoring
    local_eval, _ = evaluate(
        tmp_path / "sm.tar.gz", splits["validation"], "box", 0.5, cfg.registry, tmp_path / "a", fingerprint
    )
    before = len(emulator.requests)
    remote_eval, jobs = evaluate(
        tmp_path / "sm.tar.gz", splits["validation"], "box", 0.5, cfg.registry, tmp_path / "b", fingerprint,
        SAGEMAKER, cfg.sagemaker,
    )
    assert remote_eval.candidate == local_eval.candidate
    sent = emulator.requests[before:]
    assert {op for op, _ in sent} == {"CreateProcessingJob"}, "no transform job, no SageMaker Model"
    (processing,) = [b for _, b in sent]
    assert [processing["ProcessingJobName"]] == jobs and jobs[0].startswith("pw-eval-")
    assert processing["AppSpecification"] == {
        "ImageUri": PACKWISE_IMAGE,
        "ContainerEntrypoint": ["python", "-m", "packwise.sagemaker.entry", "score"],
    }
    inputs = {i["InputName"]: i["S3Input"] for i in processing["ProcessingInputs"]}
    assert set(inputs) == {"model-candidate", "data"}
    assert inputs["model-candidate"]["LocalPath"] == "/opt/ml/processing/input/models/candidate"
    assert inputs["model-candidate"]["S3Uri"].endswith("/model.tar.gz")
    assert inputs["data"]["LocalPath"] == "/opt/ml/processing/input/data"
    (output,) = processing["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/scores"
    assert output["S3Output"]["S3UploadMode"] == "EndOfJob"
    assert processing["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.xlarge"

    # the evaluation again attaches to its finished job
    again, jobs_again = evaluate(
        tmp_path / "sm.tar.gz", splits["validation"], "box", 0.5, cfg.registry, tmp_path / "c", fingerprint,
        SAGEMAKER, cfg.sagemaker,
    )
    assert jobs_again == jobs
    assert [b["ProcessingJobName"] for b in emulator.bodies("CreateProcessingJob")].count(jobs[0]) == 1
    assert again.candidate == remote_eval.candidate

    # inference: a shard scored in one Processing job equals the local scorer's file
    model_entry = {"path": str(tmp_path / "sm.tar.gz"), "version": 1, "threshold": 0.5}
    plan: dict[str, Any] = {"package_types": ["box"], "models": {"box": model_entry}}
    shard = tmp_path / "shard-00001.parquet"
    shard.write_bytes(splits["validation"].read_bytes())
    Scorer(load_scoring_models(plan), threads=1).score_file(shard, tmp_path / "local.parquet")
    stats = score_shard(shard, plan, SAGEMAKER, cfg.sagemaker, cfg.inference, tmp_path / "remote.parquet")
    local_table, remote_table = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "remote.parquet")
    assert remote_table.schema == local_table.schema
    assert remote_table.column("product_id").to_pylist() == local_table.column("product_id").to_pylist()
    np.testing.assert_allclose(
        remote_table.column("prob_box").to_numpy(), local_table.column("prob_box").to_numpy(), rtol=0, atol=1e-6
    )
    assert stats["rows"] == local_table.num_rows
    assert emulator.bodies("CreateProcessingJob")[-1]["ProcessingJobName"].startswith("pw-score-box-")


def test_packwise_image_without_its_uri_is_refused_before_anything_is_sent(
    cfg: PackwiseConfig, splits: dict[str, Any], emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    from packwise.errors import ConfigError
    from packwise.training import train

    before = len(emulator.requests)
    config = cfg.sagemaker.model_copy(update={"packwise_image_uri": None})
    with pytest.raises(ConfigError, match="set it to the train image skaffold's eks profile pushes"):
        train(
            splits["train"], splits["validation"], "box", cfg.features, cfg.model, tmp_path / "m.tar.gz", "k",
            splits["fingerprint"], SAGEMAKER, config,
        )
    assert emulator.requests[before:] == [] and not (tmp_path / "m.tar.gz").exists()


def test_a_text_model_is_refused_by_batch_transform_with_the_fix(
    cfg: PackwiseConfig, splits: dict[str, Any], emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    from packwise.errors import ConfigError
    from packwise.training import evaluate, train

    model = cfg.model.model_copy(update={"type": "xgboost_text"})
    path = tmp_path / "text.tar.gz"
    train(splits["train"], splits["validation"], "box", cfg.features, model, path, "k", splits["fingerprint"])
    before = len(emulator.requests)
    builtin = cfg.sagemaker.model_copy(update={"training_image": "builtin"})
    with pytest.raises(ConfigError, match=r"set sagemaker\.training_image: packwise to score in Processing jobs"):
        evaluate(path, splits["validation"], "box", 0.5, cfg.registry, tmp_path / "e", "fp", SAGEMAKER, builtin)
    assert emulator.requests[before:] == []
