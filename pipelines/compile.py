"""The one compile path: pipelines to KFP IR YAML, ready for `kfp run create -f`."""

from pathlib import Path
from typing import Literal

from kfp import compiler

from packwise.config import PackwiseConfig
from packwise_components.images import ImageSet, resolve_images

PipelineName = Literal["training", "inference"]
PIPELINES: tuple[PipelineName, ...] = ("training", "inference")


def compile_pipeline(
    pipeline: PipelineName, config: PackwiseConfig, out_dir: Path, images: ImageSet | None = None
) -> Path:
    """Writes `<pipeline>.yaml` into `out_dir`, its parameters defaulting to `config`; returns its path."""
    from packwise_pipelines.inference import build_inference_pipeline
    from packwise_pipelines.training import build_training_pipeline

    images = images or resolve_images()
    build = build_training_pipeline if pipeline == "training" else build_inference_pipeline
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{pipeline}.yaml"
    compiler.Compiler().compile(build(images, config), str(path))
    return path


def compile_all(config: PackwiseConfig, out_dir: Path, images: ImageSet | None = None) -> list[Path]:
    """Writes one IR YAML per pipeline into `out_dir`; parameters default to `config`."""
    images = images or resolve_images()
    return [compile_pipeline(name, config, out_dir, images) for name in PIPELINES]
