"""The one validated configuration model: every knob a data scientist turns lives here.

A YAML file (``packwise.yaml``), trigger files and CLI ``--set key=value`` overrides are all validated
by the same pydantic model. Unknown keys and bad values are errors that name the key. The defaults are
the embedded configuration that ``packwise train`` runs on from a fresh clone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from packwise.errors import ConfigError

PACKAGE_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

DEFAULT_PRODUCTS_SQL = """
SELECT p.*
FROM products AS p
WHERE p.product_id IN (SELECT product_id FROM labels WHERE week <= $week)
""".strip()

# The latest label of each (product, package type) as of the snapshot week wins: customer feedback
# arrives after the shipment outcome and corrects it.
DEFAULT_LABELS_SQL = """
SELECT product_id, package_type, label
FROM labels
WHERE week <= $week
QUALIFY row_number() OVER (
    PARTITION BY product_id, package_type ORDER BY week DESC, observed_at DESC, source DESC
) = 1
""".strip()


# Inference: the monthly run scores the whole inventory; the daily run the products added after the
# watermark (`$since`, the largest `added_at` a previous run loaded). Rows are unloaded ordered by product_id.
DEFAULT_INVENTORY_SQL = "SELECT p.* FROM products AS p"
DEFAULT_NEW_PRODUCTS_SQL = "SELECT p.* FROM products AS p WHERE p.added_at > $since"


DerivedFeature = Literal["volume_cm3", "max_dim_cm", "min_dim_cm", "density_kg_per_l"]
_ALL_DERIVED: tuple[DerivedFeature, ...] = ("volume_cm3", "max_dim_cm", "min_dim_cm", "density_kg_per_l")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StorageConfig(_Strict):
    """Where local state lives. Relative paths are resolved against the working directory."""

    root: Path = Field(Path(".packwise"), description="Directory for every piece of local state.")

    def resolved(self) -> StorageConfig:
        return StorageConfig(root=self.root.expanduser().resolve())

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def pipeline_root(self) -> Path:
        return self.root / "kfp"

    @property
    def cache_root(self) -> Path:
        return self.root / "kfp-cache"


class WarehouseConfig(_Strict):
    """The label and product warehouse. DuckDB (one file, no server) is the embedded default."""

    backend: Literal["duckdb"] = Field("duckdb", description="Warehouse backend.")
    path: Path = Field(Path(".packwise/warehouse.duckdb"), description="DuckDB database file.")
    products_query: str = Field(DEFAULT_PRODUCTS_SQL, description="SQL selecting labelled products; $week.")
    labels_query: str = Field(DEFAULT_LABELS_SQL, description="SQL selecting one label per product and type.")


class FeatureConfig(_Strict):
    """Which product attributes feed the models. The same spec builds training and serving rows."""

    numeric: list[str] = Field(
        default_factory=lambda: ["length_cm", "width_cm", "height_cm", "weight_kg", "fragility", "price"],
        description="Numeric product columns used as they are.",
    )
    boolean: list[str] = Field(
        default_factory=lambda: ["is_liquid", "has_battery"], description="Boolean product columns (as 0/1)."
    )
    categorical: list[str] = Field(
        default_factory=lambda: ["category", "material"],
        description="String columns, one-hot encoded on the training vocabulary; unseen values score as zeros.",
    )
    derived: list[DerivedFeature] = Field(
        default_factory=lambda: list(_ALL_DERIVED), description="Features computed from dimensions and weight."
    )
    text: str = Field("title", description="Text column, used only by model types that read text.")
    max_categories: int = Field(64, ge=1, description="Most frequent values kept per categorical column.")

    @model_validator(mode="after")
    def _no_overlap(self) -> FeatureConfig:
        seen: dict[str, str] = {}
        for group in ("numeric", "boolean", "categorical"):
            for col in getattr(self, group):
                if col in seen:
                    raise ValueError(f"column {col!r} is listed in both {seen[col]} and {group}")
                seen[col] = group
        if not seen:
            raise ValueError("no feature columns: list at least one numeric, boolean or categorical column")
        return self

    def input_columns(self, with_text: bool = False) -> list[str]:
        """Product columns the feature builder reads."""
        cols = [*self.numeric, *self.boolean, *self.categorical]
        needed = {
            "volume_cm3": ["length_cm", "width_cm", "height_cm"],
            "max_dim_cm": ["length_cm", "width_cm", "height_cm"],
            "min_dim_cm": ["length_cm", "width_cm", "height_cm"],
            "density_kg_per_l": ["length_cm", "width_cm", "height_cm", "weight_kg"],
        }
        for d in self.derived:
            cols += [c for c in needed[d] if c not in cols]
        if with_text and self.text not in cols:
            cols.append(self.text)
        return cols


class SplitConfig(_Strict):
    """Train/validation split: by product (no product in both), stratified by its labels."""

    train_ratio: float = Field(0.8, gt=0.0, lt=1.0, description="Share of products in the training split.")
    seed: int = Field(42, description="Seed of the split; the same seed and data give the same split.")


_DEFAULT_PARAMS: dict[str, float | int | str] = {
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "tree_method": "hist",
}  # no nthread: a task uses the threads its runner gives it (OMP_NUM_THREADS, else every core)


class ModelConfig(_Strict):
    """Model type (a plugin name) and its hyperparameters."""

    type: str = Field("xgboost", description="Registered model type: xgboost, xgboost_text or stacked_text.")
    params: dict[str, float | int | str] = Field(
        default_factory=lambda: dict(_DEFAULT_PARAMS),
        description="XGBoost booster parameters (objective and eval_metric are set by Packwise).",
    )
    num_boost_round: int = Field(200, ge=1, le=100_000, description="Boosting rounds.")
    text_hash_features: int = Field(
        1024, ge=16, le=1 << 20, description="Hashed title n-gram features (text model types only)."
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from packwise.models import known_model_types  # the plugin table; light import

        if value not in known_model_types():
            raise ValueError(f"unknown model type {value!r}; known: {', '.join(known_model_types())}")
        return value

    @field_validator("params")
    @classmethod
    def _no_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = {"objective", "eval_metric"} & set(value)
        if reserved:
            raise ValueError(f"{', '.join(sorted(reserved))} is set by Packwise; remove it from model.params")
        return value


class PackageTypeConfig(_Strict):
    """One package type. The list order is the protection order: least protective first."""

    name: str
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Suitability probability that recommends it.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PACKAGE_TYPE_NAME.match(value):
            raise ValueError(f"package type {value!r} must be lower_snake_case")
        return value


class Limit(_Strict):
    """Bounds of one gate criterion: past `review` needs a person, past `reject` is rejected."""

    review: float | None = None
    reject: float | None = None


def _lim(review: float | None, reject: float | None, description: str) -> Any:
    return Field(default_factory=lambda: Limit(review=review, reject=reject), description=description)


class GateConfig(_Strict):
    """Promotion gate. Drops and increases are positive when the candidate is worse than the champion.

    Absolute criteria (minimum scores) always apply; comparative ones only when a champion exists.
    """

    min_auc: Limit = _lim(None, 0.80, "Lowest candidate ROC AUC on the validation split.")
    min_pr_auc: Limit = _lim(None, 0.50, "Lowest candidate PR AUC (average precision).")
    max_log_loss: Limit = _lim(None, 0.60, "Highest candidate log loss.")
    auc_drop_abs: Limit = _lim(0.01, 0.03, "Champion AUC minus candidate AUC, both on this run's split.")
    auc_drop_rel: Limit = _lim(None, 0.04, "AUC drop as a fraction of the champion's AUC.")
    pr_auc_drop_abs: Limit = _lim(0.02, 0.05, "Champion PR AUC minus candidate PR AUC.")
    pr_auc_drop_rel: Limit = _lim(None, 0.07, "PR AUC drop as a fraction of the champion's.")
    log_loss_increase_abs: Limit = _lim(0.02, 0.06, "Candidate log loss minus champion log loss.")
    log_loss_increase_rel: Limit = _lim(None, 0.2, "Log loss increase as a fraction of the champion's.")
    label_shift_metric: Literal["jensen_shannon", "l_infinity"] = Field(
        "jensen_shannon", description="jensen_shannon (divergence in bits) or l_infinity (largest share change)."
    )
    label_shift: Limit = _lim(
        0.003, 0.015, "Shift of the training label distribution against the champion's (label_shift_metric)."
    )
    label_count_min_fraction: Limit = _lim(0.9, 0.5, "Lowest candidate/champion training label count ratio.")
    label_count_max_fraction: Limit = _lim(5.0, None, "Highest candidate/champion training label count ratio.")

    @model_validator(mode="after")
    def _ordered(self) -> GateConfig:
        lower_bounded = {"min_auc", "min_pr_auc", "label_count_min_fraction"}
        for name in type(self).model_fields:
            lim = getattr(self, name)
            if not isinstance(lim, Limit) or lim.review is None or lim.reject is None:
                continue
            bad = lim.review < lim.reject if name in lower_bounded else lim.review > lim.reject
            if bad:
                raise ValueError(f"gate.{name}: review must be reached before reject")
        return self


class NotifyConfig(_Strict):
    """Where the decision summary goes. `log` writes it to the task log and a file."""

    backend: Literal["log", "webhook"] = Field("log", description="log (task log) or webhook (JSON POST).")
    webhook_url: str | None = Field(None, description="Webhook URL (Slack/Teams-compatible `text` field).")
    timeout_s: float = Field(10.0, gt=0, description="Webhook timeout in seconds.")

    @model_validator(mode="after")
    def _url(self) -> NotifyConfig:
        if self.backend == "webhook" and not self.webhook_url:
            raise ValueError("notify.webhook_url is required when notify.backend is webhook")
        return self


ComputeTarget = Literal["local", "sagemaker"]

_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ComputeConfig(_Strict):
    """Where the heavy work runs. The DAGs are the same; only the components chosen at build time differ."""

    training: ComputeTarget = Field("local", description="Where candidates train: local (the train task) or sagemaker.")
    evaluation: ComputeTarget = Field(
        "local", description="Where the validation split is scored: local or sagemaker (batch transform)."
    )
    inference: ComputeTarget = Field(
        "local", description="Where inference shards are scored: local or sagemaker (batch transform)."
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


class RegistryConfig(_Strict):
    """Model registry. MLflow with a local sqlite store is the embedded default: no server."""

    backend: Literal["mlflow", "sagemaker"] = Field(
        "mlflow", description="Registry backend: mlflow, or sagemaker (SageMaker Model Registry)."
    )
    mirror: Literal["mlflow"] | None = Field(
        None, description="With backend sagemaker: mirror every version and status change to MLflow (tracking_uri)."
    )
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite under storage.root.")
    artifact_root: str | None = Field(None, description="Where model files are stored; default under storage.root.")
    model_name_prefix: str = Field("packwise", description="Registered model name = <prefix>-<package type>.")
    sagemaker: SageMakerConfig | None = Field(
        None, description="Copied from the `sagemaker` section when the backend is sagemaker; leave unset."
    )

    @model_validator(mode="after")
    def _mirror(self) -> RegistryConfig:
        if self.mirror is not None and self.backend != "sagemaker":
            raise ValueError("registry.mirror needs registry.backend sagemaker (MLflow cannot mirror itself)")
        return self


class InferenceConfig(_Strict):
    """The inference pipeline: which products it scores, how it shards them, how it scores them."""

    inventory_query: str = Field(DEFAULT_INVENTORY_SQL, description="SQL selecting every product (monthly mode).")
    new_products_query: str = Field(
        DEFAULT_NEW_PRODUCTS_SQL, description="SQL selecting products added after $since (daily mode)."
    )
    watermark_column: str = Field(
        "added_at", description="Timestamp column of the products queries; its largest loaded value is the watermark."
    )
    shard_target_rows: int = Field(1_000_000, ge=1, description="Most products per shard (one scoring task each).")
    shard_target_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, description="Most uncompressed input bytes per shard."
    )
    batch_rows: int = Field(131_072, ge=1_024, le=4_194_304, description="Rows per record batch while scoring.")
    local_parallelism: int = Field(
        2, ge=1, le=64, description="Shards scored at once (kfp.local caps it at 2; a cluster honours it)."
    )
    score_threads: int = Field(
        0,
        ge=0,
        le=512,
        description="XGBoost threads per scoring task; 0 uses the task's share (OMP_NUM_THREADS, else every core).",
    )

    @field_validator("watermark_column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"{value!r} must be a plain column name")
        return value

    @field_validator("new_products_query")
    @classmethod
    def _uses_since(cls, value: str) -> str:
        if "$since" not in value:
            raise ValueError("the daily query must filter on $since (the last loaded watermark)")
        return value


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|K|M|G|T)?$")
_DURATION = re.compile(r"^[0-9]+(s|m|h)$")


class TaskResources(_Strict):
    """CPU and memory of one component's pods (Kubernetes quantities, e.g. 500m, 2, 512Mi, 4Gi)."""

    cpu_request: str = Field("250m", description="CPU request.")
    cpu_limit: str = Field("1", description="CPU limit.")
    memory_request: str = Field("512Mi", description="Memory request.")
    memory_limit: str = Field("2Gi", description="Memory limit.")

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)")
        return value

    @property
    def threads(self) -> int:
        """Whole cores the CPU limit allows ("2" -> 2, "1500m" -> 1, "500m" -> 1): the pod's thread count."""
        limit = self.cpu_limit
        cores = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        return max(1, int(cores))

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
        # week 9999 = every label observed so far (warehouse.labels_query filters on week <= $week)
        "weekly-training": ScheduleConfig(pipeline="training", cron="0 0 3 * * 1", params={"week": 9999}),
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


class ClusterConfig(_Strict):
    """Running on a Kubeflow Pipelines cluster: where, as whom, with which pod settings and schedules."""

    host: str | None = Field(None, description="KFP API endpoint, e.g. http://localhost:8888; none reads it from kfp.")
    namespace: str = Field("kubeflow", description="Namespace the runs' pods run in (KFP's, or a profile's).")
    experiment: str = Field("packwise", description="KFP experiment of every Packwise run.")
    service_account: str = Field("packwise-runner", description="Service account of the runs' pods.")
    pipeline_root: str | None = Field(None, description="Artifact root, e.g. s3://bucket/kfp; none = KFP's default.")
    storage_pvc: str | None = Field(
        "packwise-storage", description="PVC mounted at storage.root in every task; none mounts nothing."
    )
    env_config_map: str | None = Field("packwise-env", description="ConfigMap whose keys become task env vars.")
    env_keys: list[str] = Field(
        default_factory=lambda: [
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
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

    @field_validator("resources")
    @classmethod
    def _has_default(cls, value: dict[str, TaskResources]) -> dict[str, TaskResources]:
        if "default" not in value:
            raise ValueError("cluster.resources needs a `default` entry for the components not listed")
        return value

    def resources_for(self, component: str) -> TaskResources:
        """The resources of `component`, or the default ones."""
        return self.resources.get(component, self.resources["default"])


class PackwiseConfig(_Strict):
    """Everything Packwise reads. See the README's configuration reference."""

    storage: StorageConfig = Field(default_factory=StorageConfig)
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    package_types: list[PackageTypeConfig] = Field(
        default_factory=lambda: [
            PackageTypeConfig(name="own_container", threshold=0.5),
            PackageTypeConfig(name="bag", threshold=0.5),
            PackageTypeConfig(name="mailer", threshold=0.5),
            PackageTypeConfig(name="box", threshold=0.5),
        ],
        min_length=1,
        description="[{name, threshold}] least protective first; the last is the fallback recommendation.",
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    sagemaker: SageMakerConfig = Field(default_factory=SageMakerConfig)

    @model_validator(mode="after")
    def _sagemaker_settings(self) -> PackwiseConfig:
        needed: list[str] = []
        if self.compute.uses_sagemaker:
            needed = ["region", "bucket", "role_arn"]
        elif self.registry.backend == "sagemaker":
            needed = ["region", "bucket"]
        for key in needed:
            if getattr(self.sagemaker, key) is None:
                user = "compute" if self.compute.uses_sagemaker else "registry.backend"
                raise ValueError(f"sagemaker.{key} is required when {user} uses sagemaker; set it in the config file")
        return self

    @field_validator("package_types")
    @classmethod
    def _unique(cls, value: list[PackageTypeConfig]) -> list[PackageTypeConfig]:
        names = [p.name for p in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"package type {dup[0]!r} is listed twice")
        return value

    @property
    def package_type_names(self) -> list[str]:
        return [p.name for p in self.package_types]

    def resolved(self) -> PackwiseConfig:
        """Absolute paths everywhere, so tasks in other processes or containers agree."""
        storage = self.storage.resolved()
        wh_path = self.warehouse.path
        if not wh_path.is_absolute():
            wh_path = (Path.cwd() / wh_path).resolve()
        registry = self.registry
        if registry.tracking_uri is None:
            registry = registry.model_copy(update={"tracking_uri": f"sqlite:///{storage.root / 'mlflow.db'}"})
        if registry.artifact_root is None:
            registry = registry.model_copy(update={"artifact_root": (storage.root / "mlartifacts").as_uri()})
        if registry.backend == "sagemaker":
            # Tasks receive only the registry section; it carries the SageMaker location it needs.
            registry = registry.model_copy(update={"sagemaker": self.sagemaker})
        return self.model_copy(
            update={
                "storage": storage,
                "warehouse": self.warehouse.model_copy(update={"path": wh_path}),
                "registry": registry,
            }
        )

    def section_json(self, name: str) -> str:
        """One section as canonical JSON: a pipeline parameter whose change invalidates only its tasks."""
        value = getattr(self, name)
        if isinstance(value, list):
            return json.dumps([v.model_dump(mode="json") for v in value], sort_keys=True)
        return json.dumps(value.model_dump(mode="json"), sort_keys=True)


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not isinstance(p, int) or True)
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {loc!r}; check its spelling against the configuration reference"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {loc or 'config'}: {msg}"


def parse_config(data: dict[str, Any], source: str = "config") -> PackwiseConfig:
    """Validates a mapping into a config; raises ConfigError naming the first bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return PackwiseConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies `key.path=value` overrides; values are parsed as YAML scalars or lists."""
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set split.train_ratio=0.7")
        key, raw = item.split("=", 1)
        _set_path(out, key.strip(), yaml.safe_load(raw))
    return out


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> PackwiseConfig:
    """Loads the YAML file (or the embedded defaults when `path` is None) and applies overrides."""
    data: dict[str, Any] = {}
    source = "embedded defaults"
    if path is not None:
        source = str(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such config file; run `packwise config init {path}` to write one")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
        data = loaded
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} with --set"
    return parse_config(data, source)


def config_from_json(text: str) -> PackwiseConfig:
    return parse_config(json.loads(text), "pipeline parameter")


def dump_default_config() -> str:
    """The embedded defaults as commented YAML, the starting point of a user's file."""
    body = yaml.safe_dump(PackwiseConfig().model_dump(mode="json"), sort_keys=False, width=100)
    return "# Packwise configuration. Every key is optional; see README.md#configuration-reference.\n" + body


def package_type_names(items: list[Any]) -> list[str]:
    """Names from a pipeline's `package_types` parameter: dicts {name, threshold} or plain names."""
    return [str(i["name"]) if isinstance(i, dict) else str(i) for i in items]


def config_reference() -> str:
    """The configuration reference as a Markdown table, generated from the model (the README embeds it)."""
    rows = ["| key | default | description |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str, instance: BaseModel) -> None:
        for name, field in model.model_fields.items():
            value = getattr(instance, name)
            key = f"{prefix}{name}"
            if isinstance(value, BaseModel) and not isinstance(value, Limit):
                walk(type(value), f"{key}.", value)
                continue
            if isinstance(value, Limit):
                default = f"review {value.review}, reject {value.reject}"
            elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
                default = ", ".join(
                    f"{v.name} ({v.threshold})" if isinstance(v, PackageTypeConfig) else str(v) for v in value
                )
            else:
                default = json.dumps(value, default=str)
            if len(default) > 60:
                default = default[:57] + "..."
            description = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | `{default.replace('|', '/')}` | {description} |")

    walk(PackwiseConfig, "", PackwiseConfig())
    return "\n".join(rows)
