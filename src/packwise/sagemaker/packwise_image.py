"""Training jobs and Processing jobs that run Packwise's own train image (``sagemaker.training_image: packwise``).

Every model type trains and scores this way, text types included, because the data travels as parquet
(the split files as they are, filtered to the columns the model type reads) and the container runs the
same plugin and scorer code as the local compute (`packwise.sagemaker.entry`):

- training: channels ``train`` and ``validation`` (``ContentType: application/x-parquet``), hyperparameters
  ``package_type``, ``model`` and ``features`` (the config sections as JSON strings); the job's
  ``output/model.tar.gz`` holds ``model.tar.gz``, Packwise's model file, which comes back unchanged;
- scoring: one Processing job per call, the model files under ``/opt/ml/processing/input/models/<key>/``
  and the products' parquet under ``/opt/ml/processing/input/data/``, the scores uploaded from
  ``/opt/ml/processing/output/scores/`` at the end of the job.

Job naming, attach-on-retry, stop-on-cancel and FailureReason follow `packwise.sagemaker.jobs`.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from packwise.config import FeatureConfig, ModelConfig, SageMakerConfig
from packwise.errors import ConfigError, DataValidationError
from packwise.files import sha256_file
from packwise.sagemaker.errors import SageMakerError
from packwise.sagemaker.jobs import PROCESSING, TRAINING, JobHandle, run_job
from packwise.sagemaker.naming import job_name
from packwise.sagemaker.session import (
    Clients,
    S3Uri,
    base_uri,
    delete_keys,
    download_file,
    exists,
    upload_file,
    upload_model_file,
)
from packwise.sagemaker.training import TrainingJobResult, tags, training_request
from packwise.sagemaker.transform import IN_ORDER, ScoringRows, as_rows, check_unique_ids, output_order

PARQUET = "application/x-parquet"
ENTRY = ["python", "-m", "packwise.sagemaker.entry"]
PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_OUTPUT = "/opt/ml/processing/output/scores"
PRODUCT_ID = "product_id"
MAX_HYPERPARAMETER = 2500  # SageMaker's limit on one hyperparameter value


def packwise_image(config: SageMakerConfig) -> str:
    """The image of ``training_image: packwise``.

    Raises:
        ConfigError: ``sagemaker.packwise_image_uri`` is not set.
    """
    if not config.packwise_image_uri:
        raise ConfigError(
            "sagemaker.training_image is packwise but sagemaker.packwise_image_uri is not set; set it to the train "
            "image skaffold's eks profile pushes (an ECR reference SageMaker can pull)"
        )
    return config.packwise_image_uri


@dataclass(frozen=True)
class ServingContainer:
    """The container a registered model package names to serve its model file.

    Attributes:
        image: The image (Packwise's, or the built-in XGBoost 3.0-5 of the region).
        content_type: The request and response content type it takes.
    """

    image: str
    content_type: str


def serving_container(
    config: SageMakerConfig, region: str, model_type: str, stacked: bool = False
) -> ServingContainer:
    """The image that serves a model of ``model_type``, matching how it was trained and how Packwise scores it.

    The built-in XGBoost container (CSV of the tabular features, as batch transform scores) only with
    ``training_image: builtin`` and a model type that reads no text and a model file without stacked
    columns (its CSV carries no text, and a fitted model in front of the booster is Packwise's code).
    Otherwise Packwise's image, whose ``serve`` command runs the local scorer on raw product columns
    (parquet).

    Args:
        config: The ``sagemaker`` section.
        region: The AWS region (of the built-in image).
        model_type: The model type the file was trained as.
        stacked: The model file carries stacked columns (``packwise.artifact.carries_stacked_columns``).

    Raises:
        ConfigError: The model type is unknown, or Packwise's image is needed and ``packwise_image_uri`` unset.
        SageMakerError: The built-in image is needed and the region has none (and no override).
    """
    from packwise.models import check_model_type, get_model_type
    from packwise.sagemaker.container import xgboost_image_uri

    check_model_type(model_type, "model type of the candidate")
    builtin_serves = not (get_model_type(model_type).uses_text or stacked)
    if config.training_image == "builtin" and builtin_serves:
        return ServingContainer(xgboost_image_uri(region, config.xgboost_image_uri), "text/csv")
    if not config.packwise_image_uri:
        why = (
            "is trained and scored with sagemaker.training_image: packwise"
            if config.training_image == "packwise"
            else "reads text or stacked columns, which the built-in XGBoost container cannot serve"
        )
        raise ConfigError(
            f"model type {model_type} {why}, so its model package names Packwise's image, but "
            "sagemaker.packwise_image_uri is not set; set it to the train image skaffold's eks profile pushes"
        )
    return ServingContainer(config.packwise_image_uri, PARQUET)


def entry_hyperparameters(package_type: str, model: ModelConfig, features: FeatureConfig) -> dict[str, str]:
    """The hyperparameters `packwise.sagemaker.entry` reads (strings, as SageMaker passes them).

    Raises:
        ConfigError: A section's JSON is longer than SageMaker allows for one value.
    """
    values = {
        "package_type": package_type,
        "model": model.model_dump_json(),
        "features": features.model_dump_json(),
    }
    for key, value in values.items():
        if len(value) > MAX_HYPERPARAMETER:
            raise ConfigError(
                f"the {key} section is {len(value)} characters as JSON, over SageMaker's {MAX_HYPERPARAMETER} per "
                "hyperparameter; shorten it (e.g. fewer params) or train locally"
            )
    return values


def write_channel(split_path: Path, package_type: str, columns: Sequence[str], out: Path) -> Path:
    """The split file filtered to the product id, ``columns`` and the package type's label, as parquet."""
    import pyarrow.parquet as pq

    from packwise.split import label_column

    names = pq.read_schema(split_path).names
    label = label_column(package_type)
    if label not in names:
        raise DataValidationError(
            f"split: {split_path} has no labels for package type {package_type!r}; re-run the split with it"
        )
    wanted = [c for c in dict.fromkeys([PRODUCT_ID, *columns, label]) if c in names]
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(split_path, columns=wanted), out, compression="zstd")
    return out


def run_packwise_training_job(
    clients: Clients,
    config: SageMakerConfig,
    model: ModelConfig,
    features: FeatureConfig,
    package_type: str,
    candidate_key: str,
    fingerprint: str,
    splits: tuple[Path, Path],
    columns: Sequence[str],
    model_out: Path,
    after_create: Callable[[JobHandle], None] | None = None,
) -> TrainingJobResult:
    """Creates (or attaches to) the candidate's training job on Packwise's image; writes its model file.

    The arguments are `packwise.sagemaker.training.run_training_job`'s, with the data as files instead of
    feature rows: ``features`` (the ``features`` section, sent as a hyperparameter), ``splits`` (the training
    and validation split files) and ``columns`` (the product columns the model type reads); ``model_out``
    receives Packwise's model.tar.gz out of the job's output.
    """
    start = time.perf_counter()
    image = packwise_image(config)
    hyper = entry_hyperparameters(package_type, model, features)
    base = job_name("train", package_type, fingerprint, candidate_key, "packwise")
    data_uri = base_uri(config, "training", "data", fingerprint, candidate_key, "parquet")
    request = training_request(
        config, model, clients.region, data_uri, package_type, candidate_key, fingerprint, image, hyper, PARQUET
    )

    def stage(_: str) -> None:
        delete_keys(clients, data_uri)
        with tempfile.TemporaryDirectory(prefix="packwise-stage-") as scratch:
            for channel, split_path in zip(("train", "validation"), splits, strict=True):
                part = write_channel(split_path, package_type, columns, Path(scratch) / channel / "part-00000.parquet")
                upload_file(clients, part, data_uri.child(channel, part.name))

    job, described = run_job(
        clients.sagemaker, TRAINING, base, request, stage, config.poll_interval_s, config.timeout_s, after_create
    )
    model_data = str(described["ModelArtifacts"]["S3ModelArtifacts"])
    with tempfile.TemporaryDirectory(prefix="packwise-sm-model-") as tmp:
        packed = download_file(clients, S3Uri.parse(model_data), Path(tmp) / "output.tar.gz")
        extract_model_file(packed, model_out)
    return TrainingJobResult(job.name, job.created, model_data, round(time.perf_counter() - start, 3))


def extract_model_file(packed: Path, model_out: Path) -> Path:
    """Packwise's ``model.tar.gz`` out of the archive SageMaker made of ``/opt/ml/model``.

    Raises:
        SageMakerError: The archive holds no ``model.tar.gz`` (the job ran another image or entry).
    """
    from packwise.files import atomic_write

    with tarfile.open(packed, mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./") == "model.tar.gz"), None)
        data = tar.extractfile(member) if member is not None else None
        if data is None:
            raise SageMakerError(
                f"{packed.name}: the training job's output holds no model.tar.gz; it must run "
                "python -m packwise.sagemaker.entry train on sagemaker.packwise_image_uri"
            )
        with atomic_write(model_out) as tmp:
            tmp.write_bytes(data.read())
    return model_out


@dataclass(frozen=True)
class ProcessingModel:
    """A model file to score with under ``key`` (its output column)."""

    key: str
    model_file: Path


def processing_request(
    config: SageMakerConfig,
    image: str,
    models: Sequence[tuple[str, S3Uri]],
    data_uri: S3Uri,
    output_uri: S3Uri,
) -> dict[str, Any]:
    """The CreateProcessingJob request (without the name): ``entry score`` over staged models and data."""
    if not config.role_arn:
        raise SageMakerError("sagemaker.role_arn is not set; name the IAM role SageMaker processing jobs run as")

    def s3_input(name: str, uri: str, local: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
                "S3CompressionType": "None",
            },
        }

    inputs = [s3_input(f"model-{key}", str(uri), f"{PROCESSING_INPUT}/models/{key}") for key, uri in models]
    inputs.append(s3_input("data", str(data_uri) + "/", f"{PROCESSING_INPUT}/data"))
    return {
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "scores",
                    "S3Output": {"S3Uri": str(output_uri), "LocalPath": PROCESSING_OUTPUT, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": config.processing_instance_type,
                "VolumeSizeInGB": config.training_volume_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": config.training_max_runtime_s},
        "AppSpecification": {"ImageUri": image, "ContainerEntrypoint": [*ENTRY, "score"]},
        "RoleArn": config.role_arn,
        "Tags": tags(config, {"packwise:job": "processing-score"}),
    }


def score_with_processing(
    clients: Clients,
    config: SageMakerConfig,
    products: pd.DataFrame | ScoringRows,
    models: Sequence[ProcessingModel],
    kind: str,
    fingerprint: str,
    identity: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Scores ``products`` with every model in one Processing job on Packwise's image.

    As `packwise.sagemaker.transform.score_with_transform` (same arguments, probabilities in ``products``
    order per model key, same errors), but one job for all models; returns the job's name beside them.
    The products are staged as one Parquet file, written (and the job's output read back) a slice at a time.
    """
    import pyarrow.parquet as pq

    rows = as_rows(products)
    ids = rows.ids()
    check_unique_ids(ids)
    image = packwise_image(config)
    digests = [sha256_file(m.model_file) for m in models]
    label = "-".join(sorted({m.key for m in models})) if len(models) == 1 else "all"
    with tempfile.TemporaryDirectory(prefix="packwise-processing-") as tmp:
        # the staged products are content-addressed: tasks scoring other rows under the same data
        # fingerprint (each package type's labelled validation rows) never share a folder or a job
        data_file = Path(tmp) / "products.parquet"
        rows.write_parquet(data_file)
        data_digest = sha256_file(data_file)
        data_uri = base_uri(config, "processing", "input", data_digest[:32])
        base = job_name(kind, label, fingerprint, data_digest, *digests, *(m.key for m in models), *identity)
        output_uri = base_uri(config, "processing", "output", base)
        staged = [(m.key, upload_model_file(clients, config, m.model_file)) for m in models]
        request = processing_request(config, image, staged, data_uri, output_uri)

        def stage(_: str) -> None:
            target = data_uri.child(data_file.name)
            if not exists(clients, target):  # one object of fixed content: a concurrent upload writes the same bytes
                upload_file(clients, data_file, target)

        job, described = run_job(
            clients.sagemaker, PROCESSING, base, request, stage, config.poll_interval_s, config.timeout_s
        )
        output = S3Uri.parse(described["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"])
        from packwise.sagemaker.entry import PROB_PREFIX

        columns = [PRODUCT_ID, *(f"{PROB_PREFIX}{m.key}" for m in models)]
        out_file = download_file(clients, output.child("products.parquet"), Path(tmp) / "out.parquet")
        scored = pq.read_table(out_file, columns=columns, use_threads=False)
    order = output_order(scored.column(PRODUCT_ID), ids)
    if order is None:
        raise SageMakerError(
            f"processing job {job.name} returned {scored.num_rows} rows for {len(ids)} products (or other ids); "
            f"check its output under {output}"
        )
    prob = {}
    for m in models:
        values = scored.column(f"{PROB_PREFIX}{m.key}").to_numpy().astype(np.float32, copy=False)
        prob[m.key] = values if order is IN_ORDER else values[order]
    return prob, [job.name]
