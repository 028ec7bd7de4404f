"""`xgboost`: gradient-boosted trees on the tabular product attributes."""

from __future__ import annotations

from packwise.models.base import XGBoostBinary


class XGBoostTabular(XGBoostBinary):
    """Tabular attributes only; its model files also run in SageMaker's built-in XGBoost container."""

    name = "xgboost"
    uses_text = False
