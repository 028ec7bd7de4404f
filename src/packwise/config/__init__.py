"""The one validated configuration model: every knob a data scientist turns lives here.

A YAML file (``packwise.yaml``), trigger files and CLI ``--set key=value`` overrides are all validated
by the same pydantic model. Unknown keys and bad values are errors that name the key. The defaults are
the embedded configuration that ``packwise train`` runs on from a fresh clone.

The sections live in one module per concern and are re-exported here, so ``from packwise.config import X``
is the one import path:

- ``ml``: features, split, model, package types, promotion gate, inference;
- ``data``: storage, warehouse, registry, notifications;
- ``sagemaker``: compute targets and the SageMaker settings;
- ``cluster``: pod resources, retries, schedules, trigger files;
- ``root``: ``PackwiseConfig``, the whole file;
- ``loading``: parsing, loading, overrides and the generated configuration reference.
"""

from packwise.config.cluster import ClusterConfig, RetryConfig, ScheduleConfig, TaskResources, TriggerConfig
from packwise.config.data import (
    DEFAULT_LABELS_SQL,
    DEFAULT_PRODUCTS_SQL,
    NotifyConfig,
    RegistryConfig,
    StorageConfig,
    WarehouseConfig,
)
from packwise.config.loading import (
    apply_overrides,
    config_from_json,
    config_reference,
    dump_default_config,
    load_config,
    parse_config,
)
from packwise.config.ml import (
    DEFAULT_INVENTORY_SQL,
    DEFAULT_NEW_PRODUCTS_SQL,
    PACKAGE_TYPE_NAME,
    DerivedFeature,
    FeatureConfig,
    GateConfig,
    InferenceConfig,
    Limit,
    ModelConfig,
    PackageTypeConfig,
    SplitConfig,
    package_type_names,
)
from packwise.config.root import PackwiseConfig
from packwise.config.sagemaker import ComputeConfig, ComputeTarget, SageMakerConfig

__all__ = [
    "DEFAULT_INVENTORY_SQL",
    "DEFAULT_LABELS_SQL",
    "DEFAULT_NEW_PRODUCTS_SQL",
    "DEFAULT_PRODUCTS_SQL",
    "PACKAGE_TYPE_NAME",
    "ClusterConfig",
    "ComputeConfig",
    "ComputeTarget",
    "DerivedFeature",
    "FeatureConfig",
    "GateConfig",
    "InferenceConfig",
    "Limit",
    "ModelConfig",
    "NotifyConfig",
    "PackageTypeConfig",
    "PackwiseConfig",
    "RegistryConfig",
    "RetryConfig",
    "SageMakerConfig",
    "ScheduleConfig",
    "SplitConfig",
    "StorageConfig",
    "TaskResources",
    "TriggerConfig",
    "WarehouseConfig",
    "apply_overrides",
    "config_from_json",
    "config_reference",
    "dump_default_config",
    "load_config",
    "package_type_names",
    "parse_config",
]
