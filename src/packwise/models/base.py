"""The model-type plugin interface and the XGBoost implementation both shipped types share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from packwise import progress
from packwise.config import FeatureConfig, ModelConfig
from packwise.features import FeatureRows, FeatureSpec, build_features, fit_feature_spec

if TYPE_CHECKING:
    import xgboost as xgb


class ModelType(Protocol):
    """What a model type provides. Its model file is always a native XGBoost booster.

    Training calls `fit`; the recipe it returns is what scoring rebuilds the booster's inputs with
    (`build_features`), so a type that needs a fitted model in front of the booster returns it as the
    recipe's `stacked` columns and every scorer runs it with no change.
    """

    name: str
    uses_text: bool

    def fit_spec(self, products: pd.DataFrame, features: FeatureConfig, model: ModelConfig) -> FeatureSpec:
        """Fits the feature recipe on the training products."""
        ...

    def train(self, rows: FeatureRows, labels: np.ndarray, model: ModelConfig) -> xgb.Booster:
        """Trains a binary suitability classifier."""
        ...

    def fit(
        self, products: pd.DataFrame, labels: np.ndarray, features: FeatureConfig, model: ModelConfig
    ) -> tuple[xgb.Booster, FeatureSpec]:
        """Fits the recipe and trains the booster on the labelled training products."""
        ...


def _rounds_progress(rounds: int) -> Any:
    """An XGBoost callback that reports boosting rounds done to the running task (`packwise.progress`)."""
    import xgboost as xgb

    class RoundsProgress(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            progress.advance(epoch + 1, rounds, "rounds")
            return False  # never stops training

    return RoundsProgress()


class XGBoostBinary:
    """Binary logistic XGBoost on Packwise feature rows; subclasses choose the features."""

    name: ClassVar[str] = ""
    uses_text: ClassVar[bool] = False

    def fit_spec(self, products: pd.DataFrame, features: FeatureConfig, model: ModelConfig) -> FeatureSpec:
        return fit_feature_spec(products, features, model.text_hash_features if self.uses_text else 0)

    @staticmethod
    def booster_params(model: ModelConfig) -> dict[str, Any]:
        return {**model.params, "objective": "binary:logistic", "eval_metric": "logloss"}

    def train(self, rows: FeatureRows, labels: np.ndarray, model: ModelConfig) -> xgb.Booster:
        import xgboost as xgb

        # QuantileDMatrix adds about a third of the memory a DMatrix does, in the same time.
        dtrain = xgb.QuantileDMatrix(rows.matrix(), label=labels, max_bin=int(model.params.get("max_bin", 256)))
        rounds = model.num_boost_round
        callbacks = [_rounds_progress(rounds)]
        return xgb.train(self.booster_params(model), dtrain, num_boost_round=rounds, callbacks=callbacks)

    def fit(
        self, products: pd.DataFrame, labels: np.ndarray, features: FeatureConfig, model: ModelConfig
    ) -> tuple[xgb.Booster, FeatureSpec]:
        spec = self.fit_spec(products, features, model)
        return self.train(build_features(products, spec), labels, model), spec


def predict(
    booster: xgb.Booster, spec: FeatureSpec, products: pd.DataFrame, engine: str = "auto"
) -> tuple[np.ndarray, FeatureRows]:
    """Suitability probabilities for `products`, built with the model's own feature recipe.

    Args:
        booster: The model.
        spec: Its feature recipe.
        products: Product rows with the recipe's input columns.
        engine: ``inference.engine`` (`packwise.engine`): the same tree engine evaluation and scoring use.
    """
    from packwise.engine import predict_proba, resolve_engine

    rows = build_features(products, spec)
    prob = predict_proba(booster, rows.matrix(), resolve_engine(engine))
    return np.asarray(prob, dtype=np.float64), rows
