"""The training DAG with `compute: sagemaker` end to end through kfp.local, against moto's server.

Train and evaluate run as SageMaker training and batch transform jobs (the container emulated by
`tests.sagemaker_emulator`), the SageMaker Model Registry holds the versions and MLflow mirrors them. The
requests the tasks sent are asserted, and a step interrupted after creating its training job attaches to
it when the run is repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from packwise.config import PackwiseConfig
from packwise.registry import Status, open_registry
from packwise.registry.mlflow_backend import MlflowRegistry
from packwise.run_summary import read_summary
from packwise_pipelines.local import LocalRun, training_run
from tests.conftest import make_config, seed
from tests.sagemaker_emulator import FAKE_CREDENTIALS, SageMakerEmulator, sagemaker_emulator, sagemaker_section

pytestmark = pytest.mark.pipeline

TYPES = ["own_container", "bag", "mailer", "box"]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


@pytest.fixture(scope="module")
def emulator() -> Iterator[SageMakerEmulator]:
    # kfp.local's subprocess tasks inherit these: the standard credential chain, fake values
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_CREDENTIALS.items():
            mp.setenv(key, value)
        with sagemaker_emulator() as running:
            yield running


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
        assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
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
