"""Where the heavy work runs (compute targets) and the Amazon SageMaker settings it needs."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from packwise.config.base import StrictModel as _Strict

ComputeTarget = Literal["local", "sagemaker"]

_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ComputeConfig(_Strict):
    """Where the heavy work runs. The DAGs are the same; only the components chosen at build time differ."""

    training: ComputeTarget = Field("local", description="Where candidates train: local (the train task) or sagemaker.")
    evaluation: ComputeTarget = Field(
        "local", description="Where the validation split is scored: local or sagemaker (batch transform or Processing)."
    )
    inference: ComputeTarget = Field(
        "local", description="Where inference shards are scored: local or sagemaker (batch transform or Processing)."
    )

    @property
    def uses_sagemaker(self) -> bool:
        return "sagemaker" in (self.training, self.evaluation, self.inference)


class SageMakerConfig(_Strict):
    """Amazon SageMaker: training jobs, batch transform, model registry. Credentials come from the standard AWS
    chain (IRSA on EKS, environment, profile), never from this file."""

    region: str | None = Field(None, description="AWS region of the jobs, the bucket and the model registry.")
    role_arn: str | None = Field(
        None, description="IAM role SageMaker jobs run as (reads and writes the bucket)."
    )
    bucket: str | None = Field(None, description="S3 bucket for staged data, model files and job outputs.")
    prefix: str = Field("packwise", description="Key prefix of everything Packwise writes to the bucket.")
    xgboost_image_uri: str | None = Field(
        None, description="Override of the XGBoost 3.0-5 container image (e.g. a private ECR mirror)."
    )
    training_image: Literal["builtin", "packwise"] = Field(
        "builtin",
        description=(
            "Which image trains and scores on SageMaker: builtin (SageMaker's XGBoost container, CSV channels, "
            "batch transform; the xgboost type only) or packwise (Packwise's train image under SageMaker's "
            "container contract, parquet channels, Processing jobs for scoring; every model type)."
        ),
    )
    packwise_image_uri: str | None = Field(
        None,
        description=(
            "Packwise's train image in a registry SageMaker can pull (ECR), e.g. the one skaffold's eks profile "
            "pushes; needed by training_image: packwise."
        ),
    )
    processing_instance_type: str = Field("ml.m5.xlarge", description="Instance type of Processing (scoring) jobs.")
    training_instance_type: str = Field("ml.m5.xlarge", description="Instance type of training jobs.")
    training_instance_count: int = Field(1, ge=1, le=100, description="Instances per training job.")
    training_volume_gb: int = Field(30, ge=1, le=16384, description="EBS volume per training instance, GB.")
    training_max_runtime_s: int = Field(
        86_400, ge=60, le=2_419_200, description="SageMaker stops a training job running longer than this."
    )
    transform_instance_type: str = Field("ml.m5.xlarge", description="Instance type of batch transform jobs.")
    transform_instance_count: int = Field(1, ge=1, le=100, description="Instances per batch transform job.")
    transform_max_payload_mb: int = Field(6, ge=1, le=100, description="Largest mini-batch sent to the container, MB.")
    transform_rows_per_file: int = Field(
        250_000, ge=1_000, description="Rows per staged CSV file (files are spread over the transform instances)."
    )
    poll_interval_s: float = Field(30.0, gt=0, le=600, description="Seconds between job status checks.")
    timeout_s: float = Field(
        21_600.0, gt=0, description="A step waits this long for its job, then stops the job and fails."
    )
    endpoint_url: str | None = Field(
        None, description="Custom AWS endpoint for tests and LocalStack/moto only; unset in production."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every job, model and package.")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _AWS_REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region name, e.g. eu-west-1")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.match(value):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("s3://") or not _BUCKET.match(value)):
            raise ValueError(f"{value!r} is not a bucket name; give the name only, without s3:// or a key")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip("/")


