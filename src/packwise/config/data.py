"""Where data and models live: local storage, the warehouse, the model registry and notifications."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from packwise.config.base import StrictModel as _Strict
from packwise.config.sagemaker import SageMakerConfig

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


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class NotifyConfig(_Strict):
    """Where the decision summary goes. `log` writes it to the task log and a file.

    A webhook URL carries its token, so it is never part of the config (which becomes pipeline parameters and
    IR defaults): the config names the environment variable that holds it, filled from a Secret on a cluster.
    """

    backend: Literal["log", "webhook"] = Field("log", description="log (task log) or webhook (JSON POST).")
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
        if self.backend == "webhook" and not self.webhook_url_env:
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
    artifact_root: str | None = Field(None, description="Where model files are stored; default under storage.root.")
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

    @model_validator(mode="after")
    def _mirror(self) -> RegistryConfig:
        if self.mirror is not None and self.backend != "sagemaker":
            raise ValueError("registry.mirror needs registry.backend sagemaker (MLflow cannot mirror itself)")
        return self


