"""Both DAGs with every step on SageMaker and a text model type, on Packwise's own image, against moto.

``sagemaker.training_image: packwise``: train runs as training jobs on the Packwise train image (parquet
channels, the config sections as hyperparameters), evaluate and score-shard as Processing jobs on the
same image; the emulator (`tests.sagemaker_emulator`) runs the container entry on the inputs staged for
each job. Nothing in the pipeline changes with the model type.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from packwise.predictions import PREDICTIONS
from packwise.run_summary import read_summary
from packwise.warehouse import open_warehouse
from packwise_pipelines.local import inference_run, training_run
from tests.conftest import make_config, seed
from tests.sagemaker_emulator import PACKWISE_IMAGE, SageMakerEmulator, sagemaker_section

pytestmark = pytest.mark.pipeline

TYPES = ["own_container", "bag", "mailer", "box"]
N_PRODUCTS = 3_000
ENTRY_SCORE = ["python", "-m", "packwise.sagemaker.entry", "score"]


@pytest.mark.parametrize("model_type", ["xgboost_text", "stacked_text"])
def test_training_and_inference_run_a_text_model_type_on_sagemaker_end_to_end(
    tmp_path_factory: pytest.TempPathFactory, emulator: SageMakerEmulator, model_type: str
) -> None:
    config = make_config(
        tmp_path_factory.mktemp(f"sm-{model_type}") / "state",
        compute={"training": "sagemaker", "evaluation": "sagemaker", "inference": "sagemaker"},
        sagemaker=sagemaker_section(
            emulator, training_image="packwise", packwise_image_uri=PACKWISE_IMAGE, prefix=f"pw-{model_type}"
        ),
        model={"type": model_type, "num_boost_round": 40},
        inference={"shard_target_rows": 1_500, "batch_rows": 1_024},  # two shards
    )
    seed(config, seed=31, n_products=N_PRODUCTS, weeks=1, labels_per_week=1_500)

    before = len(emulator.requests)
    run = training_run(config, 1, run_id=f"text-{model_type}")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    summary = read_summary(config.storage.root, run.run_id)
    assert summary is not None
    assert {row["package_type"]: row["decision"] for row in summary["package_types"]} == dict.fromkeys(
        TYPES, "Approved"
    )
    sent = emulator.requests[before:]
    assert {op for op, _ in sent} == {"CreateTrainingJob", "CreateProcessingJob"}, "no transform job, no Model"
    trainings = [b for op, b in sent if op == "CreateTrainingJob"]
    assert sorted(json.loads(t["HyperParameters"]["model"])["type"] for t in trainings) == [model_type] * len(TYPES)
    assert sorted(t["HyperParameters"]["package_type"] for t in trainings) == sorted(TYPES)
    for request in trainings:
        assert request["AlgorithmSpecification"]["TrainingImage"] == PACKWISE_IMAGE
        channels = {c["ChannelName"]: c["ContentType"] for c in request["InputDataConfig"]}
        assert channels == {"train": "application/x-parquet", "validation": "application/x-parquet"}
    evaluations = [b for op, b in sent if op == "CreateProcessingJob"]
    assert len(evaluations) == len(TYPES), "week 1 has no champion: one evaluation job per type"
    for request in evaluations:
        assert request["ProcessingJobName"].startswith("pw-eval-")
        assert request["AppSpecification"] == {"ImageUri": PACKWISE_IMAGE, "ContainerEntrypoint": ENTRY_SCORE}
        assert {i["InputName"] for i in request["ProcessingInputs"]} == {"model-candidate", "data"}

    before = len(emulator.requests)
    infer = inference_run(config, "monthly", run_id=f"text-{model_type}-monthly")
    assert infer.succeeded, infer.log_path.read_text()[-3000:]
    sent = emulator.requests[before:]
    assert {op for op, _ in sent} == {"CreateProcessingJob"}
    scoring: list[dict[str, Any]] = [b for _, b in sent]
    assert len(scoring) == 2, "one Processing job per shard, with every package type's model"
    for request in scoring:
        assert request["ProcessingJobName"].startswith("pw-score-all-")
        assert request["AppSpecification"] == {"ImageUri": PACKWISE_IMAGE, "ContainerEntrypoint": ENTRY_SCORE}
        inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in request["ProcessingInputs"]}
        assert inputs == {
            **{f"model-{t}": f"/opt/ml/processing/input/models/{t}" for t in TYPES},
            "data": "/opt/ml/processing/input/data",
        }
    with open_warehouse(config.warehouse, read_only=True) as wh:
        current = wh.fetch_df(f"SELECT * FROM {PREDICTIONS} WHERE is_current")
    assert len(current) == N_PRODUCTS and current["product_id"].is_unique
    assert current["recommended_type"].nunique() > 1
