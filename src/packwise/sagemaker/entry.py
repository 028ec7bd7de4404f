"""Packwise's train image under SageMaker's container contract: ``python -m packwise.sagemaker.entry train|score``.

``train`` (a training job with ``sagemaker.training_image: packwise``) reads, under the root (``/opt/ml``,
or ``$SM_ROOT``):

- ``input/config/hyperparameters.json``: ``package_type``, ``model`` (the ``model`` section as JSON) and
  ``features`` (the ``features`` section as JSON); SageMaker's hyperparameters are strings;
- ``input/data/train/*.parquet`` and ``input/data/validation/*.parquet``: the split files, filtered to the
  product id, the model type's input columns and the package type's label column;

and trains with the model type's plugin, exactly as the local compute does, into ``model/model.tar.gz``
(Packwise's model file; SageMaker packs ``model/`` into the job's ``output/model.tar.gz``).

``score`` (a Processing job) reads ``processing/input/models/<key>/model.tar.gz`` and
``processing/input/data/*.parquet`` and writes ``processing/output/scores/<file>.parquet``: ``product_id``
and one ``prob__<key>`` column per model, predicted by the local scorer's code.

Either way a failure writes its one-line reason to ``output/failure`` (which SageMaker shows as the job's
FailureReason) and the process exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT_ENV = "SM_ROOT"
DEFAULT_ROOT = Path("/opt/ml")
PROB_PREFIX = "prob__"
HYPERPARAMETERS = ("package_type", "model", "features")


def root_dir() -> Path:
    """The SageMaker root: ``$SM_ROOT`` when set (tests, local runs), else ``/opt/ml``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _hyperparameters(root: Path) -> dict[str, str]:
    from packwise.errors import ConfigError

    path = root / "input" / "config" / "hyperparameters.json"
    if not path.is_file():
        raise ConfigError(f"{path} is missing; a training job passes package_type, model and features")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not JSON: {err}") from None
    missing = [k for k in HYPERPARAMETERS if k not in values]
    if missing:
        raise ConfigError(f"hyperparameters lack {', '.join(missing)}; set them on the training job")
    return {k: str(v) for k, v in values.items()}


def _parquet_files(folder: Path) -> list[Path]:
    from packwise.errors import DataValidationError

    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataValidationError(f"{folder} holds no .parquet file; stage the channel's data as parquet")
    return files


def train_in_layout(root: Path) -> Path:
    """Trains the candidate the hyperparameters describe on the ``train`` channel; returns the model file.

    Raises:
        ConfigError: A hyperparameter is missing or invalid.
        DataValidationError: A channel is empty or has no labels for the package type.
    """
    import numpy as np
    import pandas as pd
    from pydantic import ValidationError

    from packwise.artifact import save_model_artifact
    from packwise.config import FeatureConfig, ModelConfig
    from packwise.errors import ConfigError
    from packwise.models import check_model_type, get_model_type
    from packwise.split import read_split

    values = _hyperparameters(root)
    try:
        model = ModelConfig.model_validate_json(values["model"])
        features = FeatureConfig.model_validate_json(values["features"])
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "(the whole section)"
        raise ConfigError(
            f"hyperparameters model/features are invalid: {err.title} {where}: {problem['msg']}; fix that setting"
        ) from None
    check_model_type(model.type, "hyperparameters: model.type")
    package_type = values["package_type"]
    start = time.perf_counter()
    plugin = get_model_type(model.type)
    columns = features.input_columns(plugin.uses_text)
    parts = [read_split(p, package_type, columns) for p in _parquet_files(root / "input" / "data" / "train")]
    products = pd.concat([p for p, _ in parts], ignore_index=True)
    labels = np.concatenate([labels for _, labels in parts])
    booster, spec = plugin.fit(products, labels, features, model)
    out = save_model_artifact(booster, spec, model.type, package_type, root / "model" / "model.tar.gz")
    print(
        f"packwise: trained {model.type} for {package_type} on {len(labels)} labels "
        f"in {time.perf_counter() - start:.1f}s -> {out}",
        flush=True,
    )
    return out


def score_in_layout(root: Path) -> list[Path]:
    """Scores every data file with every model under ``processing/input``; returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from packwise.artifact import load_model_artifact
    from packwise.errors import DataValidationError
    from packwise.files import atomic_write
    from packwise.models.base import predict
    from packwise.scoring import PRODUCT_ID

    base = root / "processing" / "input"
    model_files = sorted((base / "models").glob("*/model.tar.gz"))
    if not model_files:
        raise DataValidationError(f"{base / 'models'} holds no <key>/model.tar.gz; stage the models to score with")
    models = {f.parent.name: load_model_artifact(f) for f in model_files}
    columns = sorted({c for m in models.values() for c in m.spec.input_columns} | {PRODUCT_ID})
    out_dir = root / "processing" / "output" / "scores"
    written = []
    for path in _parquet_files(base / "data"):
        products = pq.read_table(path, columns=columns).to_pandas()
        arrays: list[pa.Array] = [pa.array(products[PRODUCT_ID].astype(str).to_numpy(), type=pa.string())]
        names = [PRODUCT_ID]
        for key, loaded in models.items():
            prob, _ = predict(loaded.booster, loaded.spec, products)
            arrays.append(pa.array(prob, type=pa.float64()))
            names.append(f"{PROB_PREFIX}{key}")
        out = out_dir / path.name
        with atomic_write(out) as tmp:
            pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp, compression="zstd")
        written.append(out)
        print(f"packwise: scored {len(products)} rows of {path.name} with {len(models)} models", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``train`` or ``score`` under ``root_dir()``; 2 on a bad command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = root_dir()
    if len(args) != 1 or args[0] not in {"train", "score"}:
        message = f"usage: python -m packwise.sagemaker.entry train|score (got {' '.join(args) or 'nothing'})"
        _fail(root, message)
        return 2
    return run(args[0], root)


def run(command: str, root: Path) -> int:
    """Runs ``train`` or ``score`` under ``root``; 0 on success, 1 (with ``output/failure``) otherwise."""
    from packwise.errors import first_line

    try:
        if command == "train":
            train_in_layout(root)
        else:
            score_in_layout(root)
    except Exception as err:  # every failure must reach output/failure, SageMaker's FailureReason
        _fail(root, f"{type(err).__name__}: {first_line(err)}")
        return 1
    return 0


def _fail(root: Path, message: str) -> None:
    print(f"packwise: {message}", file=sys.stderr, flush=True)
    failure = root / "output" / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(message[:1024] + "\n")  # SageMaker keeps the first 1 KiB
    except OSError as err:
        print(f"packwise: cannot write {failure}: {err}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
