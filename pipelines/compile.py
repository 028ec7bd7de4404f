"""The one compile path: pipelines to KFP IR YAML, ready for `kfp run create -f` or a cluster run.

The app layer (`packwise compile`, `packwise submit`, the trigger watcher) calls it; `platform.py` only
says how tasks are configured and never compiles, so the imports point one way: compile -> the pipeline
modules -> platform.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from kfp import compiler

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError
from packwise_components.images import ImageSet, resolve_images
from packwise_pipelines.inference import build_inference_pipeline
from packwise_pipelines.platform import building_for_cluster
from packwise_pipelines.training import build_training_pipeline

PipelineName = Literal["training", "inference"]
PIPELINES: tuple[PipelineName, ...] = ("training", "inference")


def compile_pipeline(
    pipeline: str,
    config: PackwiseConfig,
    out_dir: Path,
    images: ImageSet | None = None,
    for_cluster: bool = True,
) -> Path:
    """Compiles one pipeline into `out_dir/<pipeline>.yaml`; parameters default to `config`.

    With `for_cluster` the IR carries the cluster-only settings (retries, thread counts; see
    `platform.building_for_cluster`): local runs go through kfp.local and never need them.

    Args:
        pipeline: `training` or `inference`.
        config: The configuration the pipeline's parameter defaults and task settings come from.
        out_dir: Directory for the YAML file (created when missing).
        images: Image references; the resolved ones (skaffold's build output, else the release tags) by default.
        for_cluster: Add the cluster-only task settings.

    Returns:
        The path of the written IR YAML.
    """
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r}; use training or inference")
    images = images or resolve_images()
    build = build_training_pipeline if pipeline == "training" else build_inference_pipeline
    with building_for_cluster() if for_cluster else contextlib.nullcontext():
        built = build(images, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{pipeline}.yaml"
    compiler.Compiler().compile(built, str(path))
    return path


def compile_for_cluster(config: PackwiseConfig, out_dir: Path, images: ImageSet | None = None) -> list[Path]:
    """`packwise compile`'s output: both pipelines with the cluster-only settings, what `kfp run create -f` submits."""
    images = images or resolve_images()
    return [compile_pipeline(name, config, out_dir, images) for name in PIPELINES]


def compile_all(config: PackwiseConfig, out_dir: Path, images: ImageSet | None = None) -> list[Path]:
    """Both pipelines without the cluster-only settings (the IR a local build gives)."""
    images = images or resolve_images()
    return [compile_pipeline(name, config, out_dir, images, for_cluster=False) for name in PIPELINES]
