"""Each registered version as an MLflow Model: a pyfunc around the SageMaker-layout ``model.tar.gz``.

The pyfunc's one artifact is the very ``model.tar.gz`` SageMaker loads (copied byte for byte); it holds the
booster and Packwise's feature recipe, so the model takes raw product columns and returns the suitability
probability exactly as ``packwise.models.base.predict`` does. Packwise's own code ships inside the model
(``code/packwise``), so ``mlflow models serve`` needs only the pinned requirements, not a Packwise install.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc.model import PythonModel

ARTIFACT_KEY = "sagemaker_model"
PREDICTION_COLUMN = "suitability_probability"
# What the pyfunc imports at load time (packwise.artifact, .features, .models.base and their imports).
_REQUIREMENTS = ("mlflow", "xgboost", "pandas", "numpy", "pyarrow", "pydantic", "PyYAML", "cloudpickle")


class PackwiseSuitabilityModel(PythonModel):
    """Scores raw product rows with a Packwise booster and its feature recipe."""

    def load_context(self, context: Any) -> None:
        """Loads the booster and recipe from the ``model.tar.gz`` artifact."""
        from packwise.artifact import load_model_artifact

        self._loaded = load_model_artifact(Path(context.artifacts[ARTIFACT_KEY]))

    # No type hints on purpose: MLflow 3 reads them as the model's schema; the signature comes from the example.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """The suitability probability of each row, as ``packwise.models.base.predict`` computes it.

        Args:
            context: The MLflow context (unused; the model was loaded in ``load_context``).
            model_input: Raw product columns, one row per product.
            params: Unused.

        Returns:
            One column, ``suitability_probability``, aligned with the input rows.
        """
        from packwise.models.base import predict

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        prob, _ = predict(self._loaded.booster, self._loaded.spec, frame.reset_index(drop=True))
        return pd.DataFrame({PREDICTION_COLUMN: prob}, index=model_input.index)


def pinned_requirements() -> list[str]:
    """``name==version`` of every package the pyfunc imports, as installed here."""
    out = []
    for name in _REQUIREMENTS:
        dist = name
        if name == "xgboost":  # installed as xgboost-cpu on Linux: the same module
            dist = next((d for d in ("xgboost-cpu", "xgboost") if _installed(d)), "xgboost")
        found = _installed(dist)
        out.append(f"{name}=={found}" if found else name)
    return out


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _packwise_source(dest: Path) -> Path:
    """A copy of the ``packwise`` package (no caches) under ``dest``, for the model's ``code/`` folder."""
    import packwise

    target = dest / "packwise"
    shutil.copytree(Path(packwise.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def save_mlflow_model(model_file: Path, dest: Path, input_example: Sequence[dict[str, Any]] | None) -> Path:
    """Writes the MLflow Model directory of one version to ``dest`` (which must not exist).

    Args:
        model_file: The SageMaker-layout ``model.tar.gz``; copied unchanged to ``dest/artifacts/``.
        dest: The directory to create.
        input_example: A few raw product rows; when given, the signature (inputs: those columns; output:
            the probability) and the input example are inferred from them by scoring them.

    Returns:
        ``dest``.
    """
    from mlflow.models import infer_signature

    staging = dest.parent / f".{dest.name}-staging"
    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / "model.tar.gz"
    shutil.copyfile(model_file, staged)
    code = _packwise_source(staging)
    signature = None
    example = None
    if input_example:
        example = pd.DataFrame(list(input_example))
        from packwise.artifact import load_model_artifact
        from packwise.models.base import predict

        loaded = load_model_artifact(staged)
        prob, _ = predict(loaded.booster, loaded.spec, example)
        signature = infer_signature(example, pd.DataFrame({PREDICTION_COLUMN: prob}))
    mlflow.pyfunc.save_model(
        path=str(dest),
        python_model=PackwiseSuitabilityModel(),
        artifacts={ARTIFACT_KEY: str(staged)},
        code_paths=[str(code)],
        signature=signature,
        input_example=example,
        pip_requirements=pinned_requirements(),
    )
    shutil.rmtree(staging, ignore_errors=True)
    return dest
