"""The pipeline parameters that come from the config: one place for pipeline defaults and run arguments.

`pipeline_arguments(config)` is what both pipelines take as parameter defaults when they are built and
what a run on a cluster passes as arguments (filtered to the parameters the compiled pipeline has). It
imports no kfp, so the application layer (submit, schedules) can call it as well as the pipelines.
"""

from __future__ import annotations

from typing import Any

from packwise.config import PackwiseConfig

# Config sections a pipeline takes as `<section>_json` parameters.
TRAINING_SECTIONS = ("warehouse", "features", "split", "model", "gate", "registry", "notify", "compute", "sagemaker")
INFERENCE_SECTIONS = ("warehouse", "inference", "registry", "notify", "compute", "sagemaker")


def pipeline_arguments(config: PackwiseConfig) -> dict[str, Any]:
    """Every config-derived parameter of the pipelines, by name.

    Args:
        config: The resolved config.

    Returns:
        ``storage_root``, ``package_types``, ``thresholds`` and ``<section>_json`` for every section either
        pipeline takes; a pipeline uses the names it has.
    """
    args: dict[str, Any] = {
        "storage_root": str(config.storage.root),
        "package_types": config.package_type_names,
        "thresholds": {p.name: p.threshold for p in config.package_types},
    }
    for section in dict.fromkeys(TRAINING_SECTIONS + INFERENCE_SECTIONS):
        args[f"{section}_json"] = config.section_json(section)
    return args
