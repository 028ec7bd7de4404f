"""The whole configuration: one section per concern, and the checks that span sections."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from packwise.config.base import StrictModel as _Strict
from packwise.config.cluster import ClusterConfig
from packwise.config.data import NotifyConfig, RegistryConfig, StorageConfig, WarehouseConfig
from packwise.config.ml import (
    DENSE_BATCH_LIMIT_BYTES,
    FeatureConfig,
    GateConfig,
    InferenceConfig,
    ModelConfig,
    PackageTypeConfig,
    SplitConfig,
)
from packwise.config.sagemaker import ComputeConfig, SageMakerConfig


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

    @model_validator(mode="after")
    def _dense_batch_fits(self) -> PackwiseConfig:
        # A scoring batch is a dense float32 matrix: batch rows x feature columns x 4 bytes.
        width = self.features.dense_width()
        size = self.inference.batch_rows * width * 4
        if size > DENSE_BATCH_LIMIT_BYTES:
            fit = DENSE_BATCH_LIMIT_BYTES // (width * 4)
            fix = f"lower inference.batch_rows to {fit} or features.max_categories" if fit >= 1024 else (
                "lower features.max_categories or list fewer features.categorical columns"
            )
            raise ValueError(
                f"inference.batch_rows {self.inference.batch_rows} x {width} feature columns x 4 bytes is "
                f"{size / (1 << 30):.1f} GiB, over the 1 GiB a scoring batch may take; {fix}"
            )
        return self

    @model_validator(mode="after")
    def _cost_policy(self) -> PackwiseConfig:
        if self.inference.policy == "cost":
            missing = [p.name for p in self.package_types if p.cost is None]
            if missing or self.inference.damage_cost is None:
                what = f"package_types[].cost of {', '.join(missing)}" if missing else "inference.damage_cost"
                raise ValueError(f"inference.policy cost needs {what}; set it, or use inference.policy threshold")
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
        if self.warehouse.backend == "duckdb" and not wh_path.is_absolute():  # only DuckDB reads the path
            wh_path = (Path.cwd() / wh_path).resolve()
        registry = self.registry
        if registry.tracking_uri is None:
            # sqlite needs a local file: under the workspace (storage.local_dir) when the root is s3://
            db = storage.workspace / "mlflow.db"
            registry = registry.model_copy(update={"tracking_uri": f"sqlite:///{db}"})
        if registry.artifact_root is None and not registry.uses_tracking_server:
            # A tracking server keeps the default (None): its own artifact root, e.g. the S3 bucket behind
            # --artifacts-destination. A local path here would put every model file on this machine's disk.
            root = storage.root
            artifacts = f"{root}/mlartifacts" if isinstance(root, str) else (root / "mlartifacts").as_uri()
            registry = registry.model_copy(update={"artifact_root": artifacts})
        if registry.backend == "sagemaker":
            # Tasks receive only the registry section; it carries the SageMaker location it needs.
            registry = registry.model_copy(update={"sagemaker": self.sagemaker})
        costs = {p.name: p.cost for p in self.package_types}
        inference = self.inference.model_copy(
            update={"package_costs": None if None in costs.values() else {k: float(v or 0.0) for k, v in costs.items()}}
        )
        return self.model_copy(
            update={
                "inference": inference,
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


