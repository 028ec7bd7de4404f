"""Compiles the pipelines to KFP IR YAML, ready for `kfp run create -f`."""

from pathlib import Path

from kfp import compiler

from packwise.config import PackwiseConfig
from packwise_components.images import ImageSet, resolve_images


def compile_all(config: PackwiseConfig, out_dir: Path, images: ImageSet | None = None) -> list[Path]:
    """Writes one IR YAML per pipeline into `out_dir`; parameters default to `config`."""
    from packwise_pipelines.inference import build_inference_pipeline
    from packwise_pipelines.training import build_training_pipeline

    images = images or resolve_images()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    training_path = out_dir / "training.yaml"
    compiler.Compiler().compile(build_training_pipeline(images, config), str(training_path))
    written.append(training_path)
    inference_path = out_dir / "inference.yaml"
    compiler.Compiler().compile(build_inference_pipeline(images, config), str(inference_path))
    written.append(inference_path)
    return written
