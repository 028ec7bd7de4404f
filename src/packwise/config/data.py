"""Where data and models live: local storage, the warehouse, the model registry and notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

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


