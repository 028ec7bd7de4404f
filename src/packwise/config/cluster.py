"""Running on a Kubeflow Pipelines cluster: pod resources, retries, schedules and trigger files."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from packwise.config.base import StrictModel as _Strict

_DURATION = re.compile(r"^[0-9]+(s|m|h)$")


def _quantity_value(value: str) -> Decimal:
    """The number a Kubernetes quantity stands for ("1500m" -> 1.5, "2Gi" -> 2147483648).

    Raises:
        ValueError: `value` is not a quantity, or is negative.
    """
    # kubernetes (a kfp dependency) costs ~0.4 s to import: only validating a config pays it
    from kubernetes.utils.quantity import parse_quantity

    bad = ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)")
    if any(c.isspace() or c == "_" for c in value):  # Decimal() accepts them; the Kubernetes API does not
        raise bad
    try:
        number: Decimal = parse_quantity(value)
    except ValueError:
        raise bad from None
    if not number.is_finite():
        raise bad
    if number < 0:
        raise ValueError(f"{value!r} is negative; a pod's CPU and memory are quantities of at least 0")
    return number


class TaskResources(_Strict):
    """CPU and memory of one component's pods (Kubernetes quantities, e.g. 500m, 2, 512Mi, 4Gi)."""

    cpu_request: str = Field("250m", description="CPU request.")
    cpu_limit: str = Field("1", description="CPU limit.")
    memory_request: str = Field("512Mi", description="Memory request.")
    memory_limit: str = Field("2Gi", description="Memory limit.")

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        _quantity_value(value)
        return value

    @property
    def threads(self) -> int:
        """Whole cores the CPU limit allows ("2" -> 2, "1500m" -> 1, "500m" -> 1): the pod's thread count."""
        return max(1, int(_quantity_value(self.cpu_limit)))

    def __str__(self) -> str:  # the configuration reference's compact form
        return f"cpu {self.cpu_request}-{self.cpu_limit}, mem {self.memory_request}-{self.memory_limit}"


def _default_resources() -> dict[str, TaskResources]:
    big = TaskResources(cpu_request="1", cpu_limit="2", memory_request="2Gi", memory_limit="6Gi")
    extract = TaskResources(memory_request="1Gi", memory_limit="4Gi")
    return {
        "default": TaskResources(),
        "train": big,
        "evaluate": big,
        "score-shard": big,
        "extract": extract,
        "extract-products": extract,
    }


class RetryConfig(_Strict):
    """KFP retry policy of every task (pod evictions, node loss, registry or warehouse hiccups)."""

    num_retries: int = Field(2, ge=0, le=10, description="Retries of a failed task before the run fails.")
    backoff_duration: str = Field("30s", description="Wait before the first retry (e.g. 30s, 2m).")
    backoff_factor: float = Field(2.0, ge=1.0, le=10.0, description="Multiplier of the wait per retry.")
    backoff_max_duration: str = Field("10m", description="Longest wait between retries.")
    exempt: list[str] = Field(
        default_factory=lambda: ["validate", "compare", "prepare-products"],
        description="Components never retried: their failures are verdicts on the data, not transient.",
    )

    @field_validator("backoff_duration", "backoff_max_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError(f"{value!r} is not a duration like 30s, 5m or 1h")
        return value


class ScheduleConfig(_Strict):
    """One KFP recurring run."""

    pipeline: Literal["training", "inference"] = Field(description="Which pipeline it runs.")
    cron: str = Field(description="KFP cron: 6 fields, seconds first, e.g. '0 0 3 * * 1'.")
    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters (week, mode, ...).")
    enabled: bool = Field(True, description="Whether the schedule starts runs.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 6:
            raise ValueError(f"cron {value!r} needs 6 fields: seconds minutes hours day-of-month month day-of-week")
        return value

    def __str__(self) -> str:  # the configuration reference's compact form
        return f"{self.pipeline} {self.cron}"


def _default_schedules() -> dict[str, ScheduleConfig]:
    return {
        # week 0 = the newest labelled week, resolved by the extract step (a week past the history is refused)
        "weekly-training": ScheduleConfig(pipeline="training", cron="0 0 3 * * 1", params={"week": 0}),
        "daily-inference": ScheduleConfig(pipeline="inference", cron="0 0 5 * * *", params={"mode": "daily"}),
        "monthly-inference": ScheduleConfig(pipeline="inference", cron="0 0 6 1 * *", params={"mode": "monthly"}),
    }


class TriggerConfig(_Strict):
    """Trigger files: an object dropped under s3://bucket/prefix starts exactly one run."""

    bucket: str | None = Field(None, description="Bucket watched for trigger files; none disables watching.")
    prefix: str = Field("triggers/", description="Key prefix of trigger files (.yaml, .yml or .json).")
    endpoint_url: str | None = Field(None, description="S3 endpoint (KFP's MinIO on kind); none for AWS S3.")
    region: str | None = Field(None, description="AWS region of the bucket.")
    poll_interval_s: float = Field(30.0, gt=0, le=3600, description="Seconds between two listings of the prefix.")
    # What a trigger file may choose (its `config.model`), within these operator bounds.
    allow_auto_approve: bool = Field(
        False, description="Let trigger-started runs promote champions on their own (else PendingManualApproval)."
    )
    model_types: list[str] | None = Field(None, description="Model types a trigger file may choose; none: any.")
    max_num_boost_round: int = Field(2000, ge=1, le=100_000, description="Most boosting rounds a trigger may ask.")
    max_text_hash_features: int = Field(
        1 << 16, ge=16, le=1 << 20, description="Most hashed text features a trigger may ask."
    )
    param_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "eta": (0.001, 1.0),
            "max_depth": (1, 12),
            "min_child_weight": (0.0, 100.0),
            "subsample": (0.1, 1.0),
            "colsample_bytree": (0.1, 1.0),
            "lambda": (0.0, 100.0),
            "alpha": (0.0, 100.0),
            "gamma": (0.0, 100.0),
        },
        description="XGBoost parameters a trigger may set, each [low, high]; any other is refused.",
    )


class ClusterConfig(_Strict):
    """Running on a Kubeflow Pipelines cluster: where, as whom, with which pod settings and schedules."""

    host: str | None = Field(None, description="KFP API endpoint, e.g. http://localhost:8888; none reads it from kfp.")
    namespace: str = Field("kubeflow", description="Namespace the runs' pods run in (KFP's, or a profile's).")
    experiment: str = Field("packwise", description="KFP experiment of every Packwise run.")
    service_account: str = Field("packwise-runner", description="Service account of the runs' pods.")
    pipeline_root: str | None = Field(None, description="Artifact root, e.g. s3://bucket/kfp; none = KFP's default.")
    env_config_map: str | None = Field("packwise-env", description="ConfigMap whose keys become task env vars.")
    env_keys: list[str] = Field(
        default_factory=lambda: [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL_S3",
            "MLFLOW_HTTP_REQUEST_TIMEOUT",
            "PACKWISE_FAIL_TASK",
        ],
        description="Keys of env_config_map set as task env vars (a missing key is skipped).",
    )
    secret: str | None = Field("packwise-credentials", description="Secret whose keys become task env vars.")
    secret_keys: list[str] = Field(
        default_factory=lambda: [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
            "PACKWISE_WEBHOOK_URL",
            "PACKWISE_WAREHOUSE_DSN",
        ],
        description="Keys of `secret` set as task env vars (a missing key is skipped).",
    )
    resources: dict[str, TaskResources] = Field(
        default_factory=_default_resources, description="Pod resources per component; `default` covers the rest."
    )
    retries: RetryConfig = Field(default_factory=RetryConfig)
    schedules: dict[str, ScheduleConfig] = Field(
        default_factory=_default_schedules, description="Recurring runs by name (`packwise schedule apply`)."
    )
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)

    @model_validator(mode="before")
    @classmethod
    def _no_shared_volume(cls, data: Any) -> Any:
        if isinstance(data, dict) and "storage_pvc" in data:
            raise ValueError(
                "cluster.storage_pvc is gone: tasks share no volume; remove it and set storage.root to "
                "s3://bucket/prefix (S3 on EKS, KFP's MinIO on kind)"
            )
        return data

    @field_validator("resources")
    @classmethod
    def _has_default(cls, value: dict[str, TaskResources]) -> dict[str, TaskResources]:
        if "default" not in value:
            raise ValueError("cluster.resources needs a `default` entry for the components not listed")
        return value

    def resources_for(self, component: str) -> TaskResources:
        """The resources of `component`, or the default ones."""
        return self.resources.get(component, self.resources["default"])


