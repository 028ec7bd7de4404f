"""``/opt/ml`` as SageMaker mounts it for a training job and a Processing job on Packwise's image, for the
entry's tests (in process, tests/unit/test_sagemaker_entry.py) and the image's (in Docker,
tests/integration/test_sagemaker_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from packwise.config import PackwiseConfig


def lay_out_training(root: Path, splits: dict[str, Path], package_type: str, cfg: PackwiseConfig, model: Any) -> None:
    """``root`` as SageMaker mounts it for a training job on Packwise's image."""
    from packwise.models import get_model_type
    from packwise.sagemaker.packwise_image import entry_hyperparameters, write_channel

    columns = cfg.features.input_columns(get_model_type(model.type).uses_text)
    for channel in ("train", "validation"):
        write_channel(splits[channel], package_type, columns, root / "input" / "data" / channel / "part-00000.parquet")
    config_dir = root / "input" / "config"
    config_dir.mkdir(parents=True)
    hyper = entry_hyperparameters(package_type, model, cfg.features)
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyper))


def change_model_hyperparameter(root: Path, **changes: Any) -> None:
    """Rewrites the ``model`` hyperparameter (the model section as JSON) with `changes`."""
    hyper_file = root / "input" / "config" / "hyperparameters.json"
    hyper = json.loads(hyper_file.read_text())
    hyper["model"] = json.dumps({**json.loads(hyper["model"]), **changes})
    hyper_file.write_text(json.dumps(hyper))


def lay_out_scoring(root: Path, model_file: Path, products: pd.DataFrame) -> None:
    """``root/processing`` as a Processing job mounts it: the model under key ``candidate``, the products."""
    inputs = root / "processing" / "input"
    (inputs / "models" / "candidate").mkdir(parents=True)
    (inputs / "models" / "candidate" / "model.tar.gz").write_bytes(model_file.read_bytes())
    (inputs / "data").mkdir()
    products.to_parquet(inputs / "data" / "products.parquet", index=False)
    (root / "processing" / "output").mkdir(exist_ok=True)


def train_locally(cfg: PackwiseConfig, splits: dict[str, Path], model: Any, out: Path) -> Path:
    """The same candidate (package type box) trained by the local compute, for comparison."""
    from packwise.compute import TrainRequest
    from packwise.compute.local import LocalCompute

    request = TrainRequest(splits["train"], splits["validation"], "box", cfg.features, model, out, "k", "fp")
    LocalCompute().train(request)
    return out


def assert_scored_like(root: Path, products: pd.DataFrame, expected: np.ndarray) -> None:
    """The Processing job's output holds `products` in order with the `expected` probabilities (1e-6)."""
    scored = pq.read_table(root / "processing" / "output" / "scores" / "products.parquet").to_pandas()
    assert scored["product_id"].tolist() == products["product_id"].astype(str).tolist()
    np.testing.assert_allclose(scored["prob__candidate"].to_numpy(), expected, rtol=0, atol=1e-6)
