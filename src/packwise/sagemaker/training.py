"""A candidate trained by a SageMaker training job with the built-in XGBoost 3.0-5 container.

The feature recipe is fitted here on the training split (it is small: the categorical vocabularies), the
rows go to S3 as the container's CSV (label first, no header, ``ContentType: text/csv`` on the ``train``
and ``validation`` channels), the job trains with the same objective and hyperparameters as the local
trainer, and its ``model.tar.gz`` comes back. The booster SageMaker wrote is then stamped with the feature
recipe (a booster attribute, which the container ignores) so every later step reads it like a locally
trained model; the trees are untouched.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from packwise.config import ModelConfig, SageMakerConfig
from packwise.features import FeatureRows
from packwise.sagemaker.container import xgboost_image_uri
from packwise.sagemaker.csv_format import row_ranges, write_training_csv
from packwise.sagemaker.jobs import TRAINING, JobHandle, run_job
from packwise.sagemaker.naming import job_name
from packwise.sagemaker.session import Clients, S3Uri, base_uri, delete_keys, download_file, upload_file

CSV = "text/csv"


def hyperparameters(model: ModelConfig) -> dict[str, str]:
    """The built-in container's hyperparameters: the local trainer's booster params, as strings."""
    from packwise.models.base import XGBoostBinary

    params: dict[str, Any] = {**XGBoostBinary.booster_params(model), "num_round": model.num_boost_round}
    return {k: str(v) for k, v in sorted(params.items())}


def tags(config: SageMakerConfig, extra: Mapping[str, str]) -> list[dict[str, str]]:
    merged = {**config.tags, **extra}
    return [{"Key": k, "Value": str(v)[:256]} for k, v in sorted(merged.items())]


def training_request(
    config: SageMakerConfig,
    model: ModelConfig,
    region: str,
    data_uri: S3Uri,
    package_type: str,
    candidate_key: str,
    fingerprint: str,
    image: str | None = None,
    hyper: Mapping[str, str] | None = None,
    content_type: str = CSV,
) -> dict[str, Any]:
    """The CreateTrainingJob request (without the name) for data staged under ``data_uri``.

    ``image``, ``hyper`` and ``content_type`` default to the built-in container's; Packwise's own image
    passes its image, its hyperparameters and parquet (see `packwise.sagemaker.packwise_image`).
    """
    distribution = "ShardedByS3Key" if config.training_instance_count > 1 else "FullyReplicated"

    def channel(name: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": str(data_uri.child(name)) + "/",
                    "S3DataDistributionType": distribution if name == "train" else "FullyReplicated",
                }
            },
            "ContentType": content_type,
            "CompressionType": "None",
            "InputMode": "File",
        }

    if not config.role_arn:
        from packwise.sagemaker.errors import SageMakerError

        raise SageMakerError("sagemaker.role_arn is not set; name the IAM role SageMaker training jobs run as")
    return {
        "AlgorithmSpecification": {
            "TrainingImage": image or xgboost_image_uri(region, config.xgboost_image_uri),
            "TrainingInputMode": "File",
        },
        "RoleArn": config.role_arn,
        "HyperParameters": dict(hyper) if hyper is not None else hyperparameters(model),
        "InputDataConfig": [channel("train"), channel("validation")],
        "OutputDataConfig": {"S3OutputPath": str(base_uri(config, "training", "output"))},
        "ResourceConfig": {
            "InstanceType": config.training_instance_type,
            "InstanceCount": config.training_instance_count,
            "VolumeSizeInGB": config.training_volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": config.training_max_runtime_s},
        "Tags": tags(
            config,
            {
                "packwise:package-type": package_type,
                "packwise:candidate-key": candidate_key,
                "packwise:data": fingerprint,
            },
        ),
    }


def stage_channels(
    clients: Clients,
    data_uri: S3Uri,
    train: tuple[FeatureRows, np.ndarray],
    validation: tuple[FeatureRows, np.ndarray],
    files: int,
    scratch: Path,
) -> None:
    """Writes ``train/part-*.csv`` (``files`` parts) and ``validation/part-00000.csv`` under ``data_uri``."""
    delete_keys(clients, data_uri)  # a half-staged earlier attempt must not leave extra parts behind
    for channel, (rows, labels), n_files in (("train", train, files), ("validation", validation, 1)):
        per_file = max(1, -(-len(labels) // n_files))
        for index, (start, stop) in enumerate(row_ranges(len(labels), per_file)):
            part = FeatureRows(dense=rows.dense[start:stop])
            path = scratch / channel / f"part-{index:05d}.csv"
            write_training_csv(part, labels[start:stop], path)
            upload_file(clients, path, data_uri.child(channel, path.name))


@dataclass(frozen=True)
class TrainingJobResult:
    job_name: str
    created: bool
    model_data: str
    seconds: float


def run_training_job(
    clients: Clients,
    config: SageMakerConfig,
    model: ModelConfig,
    package_type: str,
    candidate_key: str,
    fingerprint: str,
    train: tuple[FeatureRows, np.ndarray],
    validation: tuple[FeatureRows, np.ndarray],
    model_out: Path,
    after_create: Callable[[JobHandle], None] | None = None,
) -> TrainingJobResult:
    """Creates (or attaches to) the candidate's training job, waits, downloads its model.tar.gz.

    Args:
        clients: AWS clients.
        config: The ``sagemaker`` section.
        model: The ``model`` section (hyperparameters).
        package_type: The package type.
        candidate_key: The candidate's identity; with the fingerprint it names the job.
        fingerprint: The data fingerprint.
        train: Training feature rows and labels.
        validation: Validation feature rows and labels (the container reports its metrics on them).
        model_out: Where SageMaker's model.tar.gz is written, as SageMaker wrote it.
        after_create: Called once the job exists (fault-injection drills use it).
    """
    start = time.perf_counter()
    base = job_name("train", package_type, fingerprint, candidate_key)
    data_uri = base_uri(config, "training", "data", fingerprint, candidate_key)
    request = training_request(config, model, clients.region, data_uri, package_type, candidate_key, fingerprint)

    def stage(_: str) -> None:
        with tempfile.TemporaryDirectory(prefix="packwise-stage-") as scratch:
            stage_channels(clients, data_uri, train, validation, config.training_instance_count, Path(scratch))

    job, described = run_job(
        clients.sagemaker, TRAINING, base, request, stage, config.poll_interval_s, config.timeout_s, after_create
    )
    model_data = str(described["ModelArtifacts"]["S3ModelArtifacts"])
    download_file(clients, S3Uri.parse(model_data), model_out)
    return TrainingJobResult(job.name, job.created, model_data, round(time.perf_counter() - start, 3))
