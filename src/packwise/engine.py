"""The tree engine that evaluates a booster: XGBoost's own `inplace_predict`, or Intel oneDAL.

The model file is always the XGBoost booster; oneDAL (``daal4py.mb.convert_model``, from the
``scikit-learn-intelex`` wheel, x86-64 only) converts it once per booster per process and scores dense
float rows with the same trees, to within float32 rounding of XGBoost's probabilities (1.2e-7 measured
on the week-1 models) and about 2.7x faster. oneDAL takes dense arrays only: hashed text features (a
sparse matrix) are always scored by XGBoost, whatever the engine.

``inference.engine`` picks it: ``auto`` takes oneDAL where it imports and XGBoost elsewhere (aarch64,
macOS arm), ``onedal`` insists on it, ``xgboost`` never uses it.

Converting the four week-1 models takes about 0.1 s (0.02-0.03 s each), once per booster per process
(`prepare_onedal`). The conversion is not kept in a file: a model unpickled from one predicted 25-30% slower
than a fresh conversion of the same booster (5M rows: 9.0 s against 7.2 s), so a cache beside the model
file cost a scoring task 1.8 s to save it 0.1 s.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from packwise.errors import ConfigError

if TYPE_CHECKING:
    import scipy.sparse as sp
    import xgboost as xgb

EngineName = Literal["auto", "xgboost", "onedal"]
ResolvedEngine = Literal["xgboost", "onedal"]


@functools.cache
def onedal_available() -> bool:
    """True when daal4py imports (the ``scikit-learn-intelex`` wheel on x86-64)."""
    try:
        import daal4py.mb  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str) -> ResolvedEngine:
    """The engine `engine` names on this machine.

    Raises:
        ConfigError: `engine` is unknown, or ``onedal`` where daal4py does not import.
    """
    if engine == "xgboost":
        return "xgboost"
    if engine == "onedal":
        if not onedal_available():
            raise ConfigError(
                "inference.engine is onedal but daal4py does not import here; "
                "pip install scikit-learn-intelex (x86-64 only) or set inference.engine: auto"
            )
        return "onedal"
    if engine == "auto":
        return "onedal" if onedal_available() else "xgboost"
    raise ConfigError(f"inference.engine must be auto, xgboost or onedal, got {engine!r}")


# id(booster) -> (booster, its oneDAL model). Holding the booster keeps its id from being reused for
# another model while the conversion is cached.
_CONVERTED: dict[int, tuple[Any, Any]] = {}
_MAX_CONVERTED = 64


def _remember(booster: xgb.Booster, model: Any) -> Any:
    if len(_CONVERTED) >= _MAX_CONVERTED:
        _CONVERTED.pop(next(iter(_CONVERTED)))
    _CONVERTED[id(booster)] = (booster, model)
    return model


def _onedal_model(booster: xgb.Booster) -> Any:
    """The oneDAL model of `booster`, converted once per process."""
    found = _CONVERTED.get(id(booster))
    if found is not None and found[0] is booster:
        return found[1]
    import daal4py.mb

    return _remember(booster, daal4py.mb.convert_model(booster))


def prepare_onedal(booster: xgb.Booster) -> None:
    """Converts `booster` for oneDAL now (once per process), so that the first prediction does not."""
    _onedal_model(booster)


def set_onedal_threads(threads: int) -> None:
    """oneDAL's thread count for this process (its TBB pool; XGBoost's ``nthread`` does not reach it).

    A scoring task is a process of its own, so the task's share of the cores (`packwise.cores`) is set
    process-wide, as ``OMP_NUM_THREADS`` is for XGBoost.
    """
    import daal4py

    daal4py.daalinit(max(1, int(threads)))


def uses_onedal(engine: ResolvedEngine, matrix: np.ndarray | sp.csr_matrix) -> bool:
    """True when `engine` scores `matrix` with oneDAL (dense arrays only; sparse rows go to XGBoost)."""
    return engine == "onedal" and isinstance(matrix, np.ndarray) and matrix.shape[0] > 0


def predict_proba(booster: xgb.Booster, matrix: np.ndarray | sp.csr_matrix, engine: ResolvedEngine) -> np.ndarray:
    """Positive-class probabilities (float32) of a binary:logistic booster on feature rows.

    Args:
        booster: The XGBoost booster (the model file).
        matrix: Feature rows as the recipe builds them (dense float array, or CSR with hashed text).
        engine: The resolved engine (`resolve_engine`); oneDAL only scores dense arrays.
    """
    if uses_onedal(engine, matrix):
        dense = np.ascontiguousarray(matrix, dtype=np.float32)
        return np.asarray(_onedal_model(booster).predict_proba(dense)[:, 1], dtype=np.float32)
    return np.asarray(booster.inplace_predict(matrix, validate_features=False), dtype=np.float32)
