"""`xgboost_text`: multi-modal, the tabular attributes plus the product title as hashed n-grams."""

from __future__ import annotations

from packwise.models.base import XGBoostBinary


class XGBoostText(XGBoostBinary):
    """Tabular attributes and hashed title words/bigrams, side by side in one sparse matrix.

    The hashing is stateless, so the booster file alone (with its feature recipe attribute) scores new
    products. Scoring needs Packwise's feature builder: SageMaker's CSV container does not hash text.
    """

    name = "xgboost_text"
    uses_text = True
