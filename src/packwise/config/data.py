"""Where data and models live: local storage, the warehouse, the model registry and notifications."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from packwise.config.base import StrictModel as _Strict
from packwise.config.sagemaker import SageMakerConfig
from packwise.errors import PackwiseError

DEFAULT_PRODUCTS_SQL = """
SELECT p.*
FROM products AS p
WHERE p.product_id IN (SELECT product_id FROM labels WHERE week <= $week)
""".strip()

# The latest label of each (product, package type) as of the snapshot week wins: customer feedback
# arrives after the shipment outcome and corrects it. A subquery rather than QUALIFY: PostgreSQL has no
# QUALIFY, and every backend (DuckDB, PostgreSQL, Redshift) runs this one text.
DEFAULT_LABELS_SQL = """
SELECT product_id, package_type, label
FROM (
    SELECT row_number() OVER (
        PARTITION BY product_id, package_type ORDER BY week DESC, observed_at DESC, source DESC
    ) AS latest, product_id, package_type, label
    FROM labels
    WHERE week <= $week
) AS ranked
WHERE latest = 1
""".strip()


# The label history `packwise train --week N` is checked against (the newest week, the labels of week N).
DEFAULT_LABEL_WEEKS_SQL = "SELECT week FROM labels"


class StorageConfig(_Strict):
    """Where Packwise's state lives: a local folder, or an object store (``s3://bucket/prefix``; MinIO and test
    servers through ``AWS_ENDPOINT_URL_S3``). Relative local paths are resolved against the working directory."""

    root: Path | str = Field(
        Path(".packwise"),
        description="Snapshots, extracts, shards, model copies and run records: a local directory or "
        "s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL_S3, credentials from the standard AWS chain).",
    )
    local_dir: Path = Field(
        Path(".packwise"),
        description="With an s3:// root: the local directory of kfp.local's outputs, cache and logs (a local "
        "root keeps them under itself).",
    )

    # "plain": the value is decided here alone (a URI stays a str, anything else becomes a Path), so the
    # config round-trips through JSON (the pipelines' parameters) with a local root staying a Path.
    @field_validator("root", mode="plain")
    @classmethod
    def _root(cls, value: Any) -> Path | str:
        if isinstance(value, str) and "://" in value:
            from packwise.storage import check_s3_uri

            try:
                return check_s3_uri(value)
            except PackwiseError as err:
                raise ValueError(str(err)) from None
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ValueError(f"storage.root must be a local path or an s3:// URI, not {type(value).__name__}")

    @property
    def is_object_store(self) -> bool:
        """Whether storage.root is an s3:// URI."""
        return isinstance(self.root, str)

    def resolved(self) -> StorageConfig:
        root = self.root if isinstance(self.root, str) else self.root.expanduser().resolve()
        return StorageConfig(root=root, local_dir=self.local_dir.expanduser().resolve())

    @property
    def workspace(self) -> Path:
        """The local directory of this machine's runner state: the root itself, or local_dir for an s3 root."""
        return self.local_dir if isinstance(self.root, str) else self.root

    @property
    def snapshots(self) -> Path:
        """The local snapshot directory (a local root only; tasks on an s3 root stage snapshots in)."""
        if isinstance(self.root, str):
            raise PackwiseError(f"storage.root {self.root} is an object store: its snapshots are staged per task")
        return self.root / "snapshots"

    @property
    def pipeline_root(self) -> Path:
        return self.workspace / "kfp"

    @property
    def cache_root(self) -> Path:
        return self.workspace / "kfp-cache"


class WarehouseConfig(_Strict):
    """The label and product warehouse. DuckDB (one file, no server) is the embedded default."""

    backend: Literal["duckdb", "postgres", "redshift"] = Field(
        "duckdb", description="Warehouse backend: duckdb (embedded file), postgres or redshift (Data API)."
    )
    path: Path = Field(Path(".packwise/warehouse.duckdb"), description="DuckDB database file.")
    duckdb_memory: str | None = Field(
        "256MB",
        # the name it had before it bounded the load too (2026-12-02) is still read
        validation_alias=AliasChoices("duckdb_memory", "duckdb_extract_memory"),
        description="duckdb: memory an extract or a prediction load may hold before its sorts, joins and "
        "checks spill to a temporary directory of the task (DuckDB's memory_limit; keeps both flat in "
        "inventory size); null: DuckDB's default, 80% of RAM. Formerly duckdb_extract_memory.",
    )
    products_query: str = Field(DEFAULT_PRODUCTS_SQL, description="SQL selecting labelled products; $week.")
    labels_query: str = Field(DEFAULT_LABELS_SQL, description="SQL selecting one label per product and type.")
    label_weeks_query: str = Field(
        DEFAULT_LABEL_WEEKS_SQL,
        description="SQL returning a `week` column, one row per label: `train --week` is checked against it.",
    )
    dsn_env: str | None = Field(
        None, description="postgres: name of the environment variable holding the DSN (never the DSN itself)."
    )
    redshift_cluster: str | None = Field(None, description="redshift: provisioned cluster identifier.")
    redshift_workgroup: str | None = Field(None, description="redshift: Serverless workgroup name.")
    redshift_database: str | None = Field(None, description="redshift: database name.")
    redshift_db_user: str | None = Field(None, description="redshift: database user (temporary credentials).")
    redshift_secret_arn: str | None = Field(None, description="redshift: Secrets Manager ARN of the credentials.")
    redshift_iam_role: str | None = Field(None, description="redshift: IAM role ARN UNLOAD and COPY use for S3.")
    redshift_s3_staging: str | None = Field(
        None, description="redshift: s3://bucket/prefix where UNLOAD writes and COPY reads."
    )
    aws_region: str | None = Field(None, description="redshift: AWS region (default: the standard AWS chain).")
    aws_endpoint_url: str | None = Field(None, description="redshift: endpoint URL override (tests).")
    statement_timeout_s: float = Field(900.0, gt=0, description="redshift: seconds to wait for one statement.")

    @field_validator("duckdb_memory")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value):
            raise ValueError(f"{value!r} is not a memory size: use e.g. 256MB or 1GB, or null for DuckDB's default")
        return value

    @model_validator(mode="after")
    def _backend_settings(self) -> WarehouseConfig:
        if self.dsn_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.dsn_env):
            raise ValueError(
                "warehouse.dsn_env must be the NAME of an environment variable holding the DSN "
                "(e.g. PACKWISE_WAREHOUSE_DSN), never the DSN itself"
            )
        if self.backend == "postgres" and not self.dsn_env:
            raise ValueError("warehouse.dsn_env is required for the postgres backend (e.g. PACKWISE_WAREHOUSE_DSN)")
        if self.backend == "redshift":
            if (self.redshift_cluster is None) == (self.redshift_workgroup is None):
                raise ValueError("redshift: set one of warehouse.redshift_cluster and warehouse.redshift_workgroup")
            missing = [
                f"warehouse.{k}"
                for k in ("redshift_database", "redshift_iam_role", "redshift_s3_staging")
                if not getattr(self, k)
            ]
            if missing:
                raise ValueError(f"redshift: set {', '.join(missing)}")
            if not str(self.redshift_s3_staging).startswith("s3://"):
                raise ValueError("warehouse.redshift_s3_staging must be an s3://bucket/prefix URL")
        return self


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class NotifyConfig(_Strict):
    """Where the decision summary goes. `log` writes it to the task log and a file.

    A webhook URL carries its token, so it is never part of the config (which becomes pipeline parameters and
    IR defaults): the config names the environment variable that holds it, filled from a Secret on a cluster.
    """

    backend: Literal["log", "webhook", "sns", "cloudwatch"] = Field(
        "log", description="One notifier: log, webhook, sns or cloudwatch (see backends for several)."
    )
    backends: list[Literal["log", "webhook", "sns", "cloudwatch"]] = Field(
        default_factory=list, description="Several notifiers at once, e.g. [log, sns, cloudwatch]; replaces backend."
    )
    webhook_url_env: str | None = Field(
        "PACKWISE_WEBHOOK_URL",
        description="Name of the env var holding the webhook URL (http/https; a secret, never in config or IR). "
        "On a cluster list it in cluster.secret_keys.",
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Webhook timeout in seconds, per attempt.")
    retries: int = Field(3, ge=0, le=10, description="Webhook retries on a connection error or HTTP 5xx/429.")
    retry_backoff_s: float = Field(
        1.0, ge=0, le=60, description="Webhook backoff factor: waits 0, 2x, 4x, ... this many seconds between tries."
    )
    sns_topic_arn: str | None = Field(None, description="sns: topic ARN receiving one message per run.")
    cloudwatch_namespace: str = Field("Packwise", min_length=1, description="cloudwatch: metric namespace.")
    alarm_topic_arn: str | None = Field(None, description="`packwise alarms apply`: SNS topic the alarms notify.")
    schedule_period_s: int = Field(
        86_400, ge=60, description="Longest expected gap between runs; no run for that long fires the alarm."
    )
    links: dict[str, str] = Field(
        default_factory=dict,
        description="Links in every sns message, {run_id} filled in, e.g. {KFP run: https://kfp/#/runs/details/{run_id}}.",
    )
    aws_region: str | None = Field(None, description="sns/cloudwatch: AWS region (default: the standard AWS chain).")
    aws_endpoint_url: str | None = Field(None, description="sns/cloudwatch: endpoint URL override (tests).")

    @property
    def active(self) -> list[str]:
        """The notifiers to send to, in order: `backends` when set, else the single `backend`."""
        return list(dict.fromkeys(self.backends)) if self.backends else [self.backend]

    @model_validator(mode="before")
    @classmethod
    def _backend_follows_backends(cls, data: Any) -> Any:
        # With `backends` set, `backend` is its first entry, so a dump of the section (the pipeline parameter
        # notify_json, every field written) validates again in the task as the same section.
        if isinstance(data, dict) and data.get("backends") and "backend" not in data:
            return {**data, "backend": next(iter(data["backends"]))}
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_plain_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "webhook_url" in data:
            # never echo the value: it is the secret
            raise ValueError(
                "notify.webhook_url is no longer accepted (the URL and its token would be stored in the pipeline IR "
                "and run parameters); put the URL in an environment variable (a cluster.secret key on a cluster) "
                "and set notify.webhook_url_env to its name"
            )
        return data

    @field_validator("webhook_url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                "is not an environment variable name (letters, digits, _); name the variable, not its value"
            )
        return value

    @model_validator(mode="after")
    def _url(self) -> NotifyConfig:
        if self.backends and self.backend not in self.backends:
            raise ValueError("set notify.backends or notify.backend, not both (backends: [log, sns] replaces it)")
        if "sns" in self.active and not self.sns_topic_arn:
            raise ValueError("notify.sns_topic_arn is required for the sns notifier")
        if "webhook" in self.active and not self.webhook_url_env:
            raise ValueError(
                "notify.webhook_url_env is required when notify.backend is webhook (the name of the env var "
                "holding the URL)"
            )
        return self



class RegistryConfig(_Strict):
    """Model registry. MLflow with a local sqlite store is the embedded default: no server."""

    backend: Literal["mlflow", "sagemaker"] = Field(
        "mlflow", description="Registry backend: mlflow, or sagemaker (SageMaker Model Registry)."
    )
    mirror: Literal["mlflow"] | None = Field(
        None, description="With backend sagemaker: mirror every version and status change to MLflow (tracking_uri)."
    )
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI, without credentials (MLflow reads MLFLOW_TRACKING_USERNAME/PASSWORD or "
        "MLFLOW_TRACKING_TOKEN from the env); default sqlite under storage.root.",
    )
    artifact_root: str | None = Field(
        None,
        description="Where model files are stored; default under storage.root, or with an http(s) tracking_uri "
        "the server's own artifact root (its --artifacts-destination).",
    )
    model_name_prefix: str = Field("packwise", description="Registered model name = <prefix>-<package type>.")
    sagemaker: SageMakerConfig | None = Field(
        None, description="Copied from the `sagemaker` section when the backend is sagemaker; leave unset."
    )

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(value)
        secret_query = {k.lower() for k, _ in parse_qsl(parts.query)} & {"token", "password", "access_token"}
        if parts.scheme in {"http", "https"} and (parts.username is not None or secret_query):
            # the value is not echoed: it holds the credential
            raise ValueError(
                f"a tracking URI with credentials ({parts.scheme}://{parts.hostname}/...) would be stored in the "
                "pipeline IR and run parameters; give it without them and set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment (cluster.secret_keys)"
            )
        return value

    @property
    def uses_tracking_server(self) -> bool:
        """Whether tracking_uri names an MLflow tracking server (http/https) rather than a local store."""
        return (self.tracking_uri or "").lower().startswith(("http://", "https://"))

    @model_validator(mode="after")
    def _mirror(self) -> RegistryConfig:
        if self.mirror is not None and self.backend != "sagemaker":
            raise ValueError("registry.mirror needs registry.backend sagemaker (MLflow cannot mirror itself)")
        return self


