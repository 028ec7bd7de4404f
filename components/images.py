"""The one place that turns a component's image name into an image reference.

Registry, repository prefix and tag come from the environment, or from the JSON file that
`skaffold build --file-output` writes (PACKWISE_BUILD_ARTIFACTS), else a local default
(`packwise-<image>:<version>`). Nothing is read at import: `resolve_images()` reads when called, and
importing this module never fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packwise import __version__

# component -> image name (folder under images/). One image per component, holding only its extra.
COMPONENT_IMAGES: dict[str, str] = {
    "extract": "warehouse",
    "validate": "data",
    "split": "data",
    "train": "train",  # with boto3: compute.training may send the work to SageMaker
    "evaluate": "evaluate",
    "compare": "gate",
    "register": "registry",
    "notify": "notify",
    # inference
    "extract-products": "warehouse",
    "resolve-models": "evaluate",  # registry download, and xgboost to read each model's feature recipe
    "prepare-products": "data",
    "shard-products": "data",
    "score-shard": "train",  # xgboost and scikit-learn (hashed titles)
    "load-predictions": "warehouse",
    "notify-inference": "notify",
}


# Images that are not pipeline components (Deployments in manifests/); built and checked like the others.
SERVICE_IMAGES: dict[str, str] = {
    "watcher": "packwise_app.trigger",  # image name -> the module it runs
}


@dataclass(frozen=True)
class ImageSet:
    """Image references for every component image."""

    registry: str = ""
    prefix: str = "packwise-"
    tag: str = __version__
    built: Mapping[str, str] = field(default_factory=dict)  # image repo name -> full ref from skaffold

    def repository(self, image: str) -> str:
        repo = f"{self.prefix}{image}"
        return f"{self.registry.rstrip('/')}/{repo}" if self.registry else repo

    def ref(self, image: str) -> str:
        repo = self.repository(image)
        return self.built.get(repo) or self.built.get(f"{self.prefix}{image}") or f"{repo}:{self.tag}"

    def for_component(self, component: str) -> str:
        return self.ref(COMPONENT_IMAGES[component])


def resolve_images(env: Mapping[str, str] | None = None) -> ImageSet:
    """Reads PACKWISE_IMAGE_REGISTRY, PACKWISE_IMAGE_PREFIX, PACKWISE_IMAGE_TAG, PACKWISE_BUILD_ARTIFACTS."""
    env = os.environ if env is None else env
    built: dict[str, str] = {}
    artifacts = env.get("PACKWISE_BUILD_ARTIFACTS", "")
    if artifacts and Path(artifacts).exists():
        for build in json.loads(Path(artifacts).read_text()).get("builds", []):
            built[build["imageName"]] = build["tag"]
    return ImageSet(
        registry=env.get("PACKWISE_IMAGE_REGISTRY", ""),
        prefix=env.get("PACKWISE_IMAGE_PREFIX", "packwise-"),
        tag=env.get("PACKWISE_IMAGE_TAG", __version__),
        built=built,
    )


def lightweight_component(func: Any, component: str, images: ImageSet) -> Any:
    """`func` as a lightweight KFP component on `component`'s image, with nothing installed at start.

    The images already carry kfp and packwise (`install_kfp_package=False`), so a task starts straight
    away; the subprocess runner uses the current environment instead.
    """
    from kfp import dsl

    return dsl.component(func=func, base_image=images.for_component(component), install_kfp_package=False)
