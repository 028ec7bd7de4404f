"""Both DAGs with `compute: sagemaker` end to end through kfp.local, against moto's server.

Training: train and evaluate run as SageMaker training and batch transform jobs (the container emulated
by `tests.sagemaker_emulator`), the SageMaker Model Registry holds the versions and MLflow mirrors them.
The requests the tasks sent are asserted, and a step interrupted after creating its training job attaches
to it when the run is repeated.

Inference: a second world in the same server (its own storage, warehouse and model package groups)
trains locally, registers in the SageMaker Model Registry and scores every shard in batch transform jobs;
the predictions table equals a local-scoring run on a copy of the same warehouse.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from packwise.config import PackwiseConfig
from packwise.predictions import PREDICTIONS
from packwise.registry import Status, open_registry
from packwise.registry.mlflow_backend import MlflowRegistry
from packwise.run_summary import read_summary
from packwise.warehouse import open_warehouse
from packwise_pipelines.local import LocalRun, inference_run, training_run
from tests.conftest import make_config, seed
from tests.sagemaker_emulator import (
    BUCKET,
    ROLE_ARN,
    XGBOOST_IMAGE,
    SageMakerEmulator,
    sagemaker_section,
)

pytestmark = pytest.mark.pipeline

TYPES = ["own_container", "bag", "mailer", "box"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory, emulator: SageMakerEmulator) -> PackwiseConfig:
    config = make_config(
        tmp_path_factory.mktemp("sagemaker-training") / "state",
        compute={"training": "sagemaker", "evaluation": "sagemaker"},
        sagemaker=sagemaker_section(emulator),
        registry={"backend": "sagemaker", "mirror": "mlflow"},
        model={"num_boost_round": 60},
    )
    seed(config, seed=11, n_products=5_000, weeks=2, labels_per_week=1_500)
    return config


def _run(cfg: PackwiseConfig, week: int, run_id: str) -> tuple[LocalRun, dict[str, Any]]:
    run = training_run(cfg, week, run_id=run_id)
    summary = read_summary(cfg.storage.root, run.run_id)
    assert summary is not None, f"no summary written; see {run.log_path}"
    return run, summary


def _by_type(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["package_type"]: row for row in summary["package_types"]}


def _executed(run: LocalRun) -> list[str]:
    return sorted(e.label for e in run.events if e.state in {"succeeded", "failed"})


def test_week1_trains_and_evaluates_on_sagemaker_and_registers_there(
    cfg: PackwiseConfig, emulator: SageMakerEmulator
) -> None:
    run, summary = _run(cfg, 1, "sm-week1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    rows = _by_type(summary)
    assert {t: r["decision"] for t, r in rows.items()} == dict.fromkeys(TYPES, "Approved")

    trainings = emulator.bodies("CreateTrainingJob")
    assert sorted(t["TrainingJobName"].split("-")[2] for t in trainings) == sorted(t.split("_")[0] for t in TYPES), (
        "one training job per package type"
    )
    for request in trainings:
        assert request["AlgorithmSpecification"]["TrainingImage"] == XGBOOST_IMAGE
        channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
        assert set(channels) == {"train", "validation"}
        assert {c["ContentType"] for c in channels.values()} == {"text/csv"}
        assert request["HyperParameters"]["objective"] == "binary:logistic"
        assert request["HyperParameters"]["num_round"] == "60"

    transforms = emulator.bodies("CreateTransformJob")
    assert len(transforms) == len(TYPES), "week 1 has no champion to re-score: one transform job per type"
    for request in transforms:
        assert request["TransformJobName"].startswith("pw-eval-")
        assert request["BatchStrategy"] == "MultiRecord"
        assert request["TransformInput"]["SplitType"] == "Line"
        assert request["TransformInput"]["ContentType"] == "text/csv"
        assert request["TransformOutput"]["AssembleWith"] == "Line"
        assert request["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}

    packages = emulator.bodies("CreateModelPackage")
    assert len(packages) == len(TYPES)
    assert {p["ModelApprovalStatus"] for p in packages} == {"Approved"}
    registry = open_registry(cfg.registry)
    mirror = MlflowRegistry(
        tracking_uri=cfg.registry.tracking_uri or "", artifact_root=cfg.registry.artifact_root or ""
    )
    for package_type in TYPES:
        champion = registry.champion(package_type)
        assert champion is not None and champion.version == rows[package_type]["version"]
        assert champion.artifact_uri.startswith("s3://packwise-test-bucket/")
        mirrored = mirror.champion(package_type)
        assert mirrored is not None and mirrored.candidate_key == champion.candidate_key


def test_an_interrupted_training_step_attaches_to_its_job_when_the_run_is_repeated(
    cfg: PackwiseConfig, emulator: SageMakerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainings_before = len(emulator.bodies("CreateTrainingJob"))
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "sagemaker-job-created/mailer")
    failed, summary = _run(cfg, 2, "sm-week2-interrupted")
    assert not failed.succeeded
    assert _by_type(summary)["mailer"]["decision"] == "failed"
    created = emulator.bodies("CreateTrainingJob")[trainings_before:]
    mailer_jobs = [b["TrainingJobName"] for b in created if b["TrainingJobName"].startswith("pw-train-mailer-")]
    assert len(mailer_jobs) == 1, "the mailer job was created before the step died"

    monkeypatch.delenv("PACKWISE_FAIL_TASK")
    resumed, summary = _run(cfg, 2, "sm-week2-resumed")
    assert resumed.succeeded, resumed.log_path.read_text()[-3000:]
    executed = [t for t in _executed(resumed) if not t.startswith(("extract", "notify"))]
    assert executed == ["compare (mailer)", "evaluate (mailer)", "register (mailer)", "train (mailer)"], executed
    created = emulator.bodies("CreateTrainingJob")[trainings_before:]
    assert [b["TrainingJobName"] for b in created if b["TrainingJobName"].startswith("pw-train-mailer-")] == mailer_jobs
    assert len(created) == len(TYPES), "no second training job for any type"

    # week 2 re-scores each week-1 champion next to its candidate: two transform jobs per type
    week2_evals = [b for b in emulator.bodies("CreateTransformJob")[len(TYPES) :]]
    assert len(week2_evals) == 2 * len(TYPES)
    rows = _by_type(summary)
    registry = open_registry(cfg.registry)
    for package_type in TYPES:
        version = registry.get(package_type, rows[package_type]["version"])
        assert "champion_auc" in version.metrics and "v1" in version.gate_report
        assert rows[package_type]["decision"] in {s.value for s in Status}


def test_the_same_week_again_sends_nothing_to_sagemaker(cfg: PackwiseConfig, emulator: SageMakerEmulator) -> None:
    before = len(emulator.requests)
    run, _ = _run(cfg, 2, "sm-week2-again")
    assert run.succeeded
    assert [t for t in _executed(run) if not t.startswith(("extract", "notify"))] == []
    assert emulator.requests[before:] == [], "every SageMaker task was a cache hit"


# -- inference -------------------------------------------------------------------------------------------

N_PRODUCTS = 5_000
INFERENCE = {"shard_target_rows": 2_000, "batch_rows": 1_024}  # three shards: 2000, 2000, 1000 rows
ROWS_PER_FILE = 1_000  # the minimum: two input files for the 2000-row shards


def _inference_config(root: Path, emulator: SageMakerEmulator, compute: str, **sections: Any) -> PackwiseConfig:
    return make_config(
        root,
        compute={"inference": compute},  # training and evaluation stay local
        sagemaker=sagemaker_section(emulator, transform_rows_per_file=ROWS_PER_FILE),
        registry={"backend": "sagemaker", "model_name_prefix": "pw-infer"},  # groups apart from training's
        inference=INFERENCE,
        **sections,
    )


@pytest.fixture(scope="module")
def infer_cfg(tmp_path_factory: pytest.TempPathFactory, emulator: SageMakerEmulator) -> PackwiseConfig:
    config = _inference_config(tmp_path_factory.mktemp("sagemaker-inference") / "state", emulator, "sagemaker")
    seed(config, seed=23, n_products=N_PRODUCTS, weeks=1, labels_per_week=2_000)
    run = training_run(config, 1, run_id="infer-week1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    return config


def _infer(cfg: PackwiseConfig, run_id: str) -> tuple[LocalRun, dict[str, Any]]:
    run = inference_run(cfg, "monthly", run_id=run_id)
    summary = read_summary(cfg.storage.root, run.run_id)
    assert summary is not None, f"no summary written; see {run.log_path}"
    return run, summary


def _predictions(cfg: PackwiseConfig) -> pd.DataFrame:
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        return wh.fetch_df(f"SELECT * FROM {PREDICTIONS} ORDER BY product_id, run_id").reset_index(drop=True)


def test_monthly_inference_scores_every_shard_in_batch_transform_like_local_scoring(
    infer_cfg: PackwiseConfig, emulator: SageMakerEmulator, tmp_path: Path
) -> None:
    cfg = infer_cfg
    local_warehouse = tmp_path / "local.duckdb"
    shutil.copy(cfg.warehouse.path, local_warehouse)
    before = len(emulator.requests)

    run, summary = _infer(cfg, "sm-monthly-1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert summary["n_products"] == N_PRODUCTS and summary["loaded"]
    shards = sorted(e.label for e in run.events if e.label.startswith("score-shard (") and e.state == "succeeded")
    assert shards == ["score-shard (shard-00000)", "score-shard (shard-00001)", "score-shard (shard-00002)"]
    sent = emulator.requests[before:]
    assert {op for op, _ in sent} == {"CreateModel", "CreateTransformJob"}, "inference sends nothing else recorded"

    # one SageMaker Model per champion file (they were trained locally: a local model serves a transform job)
    registry = open_registry(cfg.registry)
    created_models = [b for op, b in sent if op == "CreateModel"]
    # Two shard tasks run at once and may both try to create the same model; SageMaker refuses the second
    # ("already exists") and the step takes that as done. What matters is one model per champion file.
    model_names = {m["ModelName"] for m in created_models}
    assert sorted(n.split("-")[2] for n in model_names) == sorted(t.split("_")[0] for t in TYPES)
    assert len(created_models) <= 2 * len(model_names)
    for request in created_models:
        assert request["ExecutionRoleArn"] == ROLE_ARN
        assert request["PrimaryContainer"]["Image"] == XGBOOST_IMAGE
        assert request["PrimaryContainer"]["ModelDataUrl"].startswith(f"s3://{BUCKET}/packwise-test/")
        assert request["PrimaryContainer"]["ModelDataUrl"].endswith(".tar.gz")

    # one transform job per shard and package type, on the models just created, with the settings of the issue
    transforms = [b for op, b in sent if op == "CreateTransformJob"]
    assert len(transforms) == 3 * len(TYPES)
    assert len({t["TransformJobName"] for t in transforms}) == len(transforms)
    assert {t["ModelName"] for t in transforms} == {m["ModelName"] for m in created_models}
    inputs = {t["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] for t in transforms}
    assert len(inputs) == 3 * len(TYPES), "every shard and recipe has its own staged input"
    for request in transforms:
        assert request["TransformJobName"].startswith("pw-score-")
        assert request["BatchStrategy"] == "MultiRecord"
        assert request["TransformInput"]["SplitType"] == "Line"
        assert request["TransformInput"]["ContentType"] == "text/csv"
        assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
        assert request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].startswith(
            f"s3://{BUCKET}/packwise-test/transform/input/"
        )
        assert request["TransformOutput"]["AssembleWith"] == "Line"
        assert request["TransformOutput"]["Accept"] == "text/csv"
        assert request["TransformOutput"]["S3OutputPath"].startswith(f"s3://{BUCKET}/packwise-test/transform/output/")
        assert request["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}
    # the staged inputs: id first, then the features, no header; 1000 rows per file
    s3 = emulator.client("s3")
    parts: list[str] = []
    for uri in sorted(inputs):
        prefix = uri.removeprefix(f"s3://{BUCKET}/")
        parts += [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert len(parts) == len(TYPES) * (2 + 2 + 1), parts
    lines = s3.get_object(Bucket=BUCKET, Key=parts[0])["Body"].read().decode().splitlines()
    assert len(lines) == 1_000 and lines[0].split(",")[0].startswith("P") and len(lines[0].split(",")) > 2

    # exactly one current row per product, every product of the inventory
    sm_table = _predictions(cfg)
    current = sm_table[sm_table["is_current"]].reset_index(drop=True)
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        inventory = wh.fetch_df("SELECT product_id FROM products ORDER BY product_id")
    assert len(current) == N_PRODUCTS and current["product_id"].is_unique
    assert current["product_id"].tolist() == inventory["product_id"].tolist()
    for package_type in TYPES:
        champion = registry.champion(package_type)
        assert champion is not None and current[f"model_version_{package_type}"].eq(champion.version).all()

    # the same products scored by the local scorer, on a copy of the warehouse as it was before
    local_cfg = _inference_config(cfg.storage.root, emulator, "local", warehouse={"path": str(local_warehouse)})
    local_run, _ = _infer(local_cfg, "local-monthly-1")
    assert local_run.succeeded, local_run.log_path.read_text()[-3000:]
    local = _predictions(local_cfg)
    local = local[local["is_current"]].reset_index(drop=True)
    assert local["product_id"].tolist() == current["product_id"].tolist()
    probs = [f"prob_{t}" for t in TYPES]
    pd.testing.assert_frame_equal(current[probs], local[probs], check_exact=False, rtol=0, atol=1e-6)
    assert current["recommended_type"].tolist() == local["recommended_type"].tolist()
    versions = [f"model_version_{t}" for t in TYPES]
    pd.testing.assert_frame_equal(current[versions], local[versions])
    assert current["recommended_type"].nunique() > 1, "a meaningful comparison recommends more than one type"


def test_the_same_inference_run_again_sends_nothing_to_sagemaker(
    infer_cfg: PackwiseConfig, emulator: SageMakerEmulator
) -> None:
    before_requests, before_table = len(emulator.requests), _predictions(infer_cfg)
    run, summary = _infer(infer_cfg, "sm-monthly-1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert summary["already_loaded"] and not summary["loaded"]
    assert emulator.requests[before_requests:] == [], "every score task was a cache hit"
    pd.testing.assert_frame_equal(_predictions(infer_cfg), before_table)


@pytest.mark.parametrize("compute", ["sagemaker", "local"])
def test_packwise_compile_builds_one_score_task_whatever_the_compute(tmp_path: Path, compute: str) -> None:
    """One set of components: the compute is a parameter (the `compute` and `sagemaker` sections), not a
    second component, so the DAG and the images are the same and only the parameter defaults differ."""
    import json

    import yaml
    from typer.testing import CliRunner

    from packwise_app.cli import app
    from packwise_components.images import resolve_images

    args = ["compile", "--out", str(tmp_path), "--set", f"compute.inference={compute}"]
    for key, value in {"region": "us-east-1", "role_arn": ROLE_ARN, "bucket": BUCKET}.items():
        args += ["--set", f"sagemaker.{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ir = next(yaml.safe_load_all((tmp_path / "inference.yaml").read_text()))  # the platform spec follows

    executors = ir["deploymentSpec"]["executors"]
    assert [name for name in executors if name.startswith("exec-score")] == ["exec-score-shard"]
    assert executors["exec-score-shard"]["container"]["image"] == resolve_images().for_component("score-shard")

    loops = [c["dag"]["tasks"] for c in ir["components"].values() if "score-shard" in c.get("dag", {}).get("tasks", {})]
    assert len(loops) == 1, "one score task, inside the per-shard loop"
    parameters = loops[0]["score-shard"]["inputs"]["parameters"]
    assert parameters["shard"] == {"componentInputParameter": "pipelinechannel--shard-products-Output-loop-item"}
    for section in ("compute_json", "sagemaker_json"):  # pipeline parameters, never task outputs
        assert parameters[section] == {"componentInputParameter": f"pipelinechannel--{section}"}
    defaults = ir["root"]["inputDefinitions"]["parameters"]
    assert json.loads(defaults["compute_json"]["defaultValue"])["inference"] == compute
    sagemaker = json.loads(defaults["sagemaker_json"]["defaultValue"])
    assert sagemaker["bucket"] == BUCKET and sagemaker["role_arn"] == ROLE_ARN
