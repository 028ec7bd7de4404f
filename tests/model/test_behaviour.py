"""Model behaviour: what a trained tabular model must do whatever its scores (Made-With-ML style tests).

One small model set is trained per module on the synthetic catalogue, whose ground truth is known: the
less protective types (own_container, bag, mailer) lose suitability as fragility rises and when the
product is a liquid; the tabular model (`xgboost`) never reads the title. Each test changes one attribute
of held-out products ("twins") and checks the direction of the change, not a score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from packwise.config import FeatureConfig, ModelConfig
from packwise.features import FeatureSpec, build_features
from packwise.models import get_model_type
from packwise.models.base import predict
from packwise.scoring import recommend
from packwise.synthetic import PACKAGE_TYPES, generate_products, ground_truth

THRESHOLDS = [0.5] * len(PACKAGE_TYPES)
LESS_PROTECTIVE = PACKAGE_TYPES[:-1]  # own_container, bag, mailer; box is the fallback


@dataclass(frozen=True)
class TrainedModels:
    spec: FeatureSpec
    boosters: dict[str, object]

    def probabilities(self, products: pd.DataFrame) -> np.ndarray:
        """Products x package types (least protective first)."""
        return np.column_stack([predict(self.boosters[t], self.spec, products)[0] for t in PACKAGE_TYPES])

    def recommendation(self, products: pd.DataFrame) -> np.ndarray:
        """Index into PACKAGE_TYPES: higher is more protective."""
        return recommend(self.probabilities(products), THRESHOLDS)


@pytest.fixture(scope="module")
def models() -> TrainedModels:
    products = generate_products(2000, seed=7)
    truth = ground_truth(products)
    model_type = get_model_type("xgboost")
    model = ModelConfig(type="xgboost", num_boost_round=60)
    spec = model_type.fit_spec(products, FeatureConfig(), model)
    rows = build_features(products, spec)
    rng = np.random.default_rng(0)
    boosters: dict[str, object] = {}
    for package_type in PACKAGE_TYPES:  # labels drawn from the true suitability, as shipments are
        labels = (rng.random(len(products)) < truth[f"p_{package_type}"].to_numpy()).astype(float)
        boosters[package_type] = model_type.train(rows, labels, model)
    return TrainedModels(spec, boosters)


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return generate_products(500, seed=8, first_index=100_000)


def test_a_more_fragile_twin_is_never_packed_less_protectively(models: TrainedModels, held_out: pd.DataFrame) -> None:
    sturdy, fragile = held_out.assign(fragility=0.1), held_out.assign(fragility=0.9)
    before, after = models.recommendation(sturdy), models.recommendation(fragile)
    assert (after >= before).all(), held_out.loc[after < before, ["product_id", "material", "category"]]
    assert (after > before).sum() > len(held_out) // 2, "fragility must matter for most products"
    p_sturdy, p_fragile = models.probabilities(sturdy), models.probabilities(fragile)
    for j, package_type in enumerate(LESS_PROTECTIVE):
        gained = p_fragile[:, j] > p_sturdy[:, j] + 0.01
        assert not gained.any(), f"{gained.sum()} fragile twins became more suitable for {package_type}"


def test_a_liquid_twin_is_never_packed_less_protectively(models: TrainedModels, held_out: pd.DataFrame) -> None:
    dry, liquid = held_out.assign(is_liquid=False), held_out.assign(is_liquid=True)
    before, after = models.recommendation(dry), models.recommendation(liquid)
    assert (after >= before).all(), held_out.loc[after < before, ["product_id", "material", "category"]]
    assert (after > before).any()


def test_reordering_title_words_changes_nothing_for_the_tabular_model(
    models: TrainedModels, held_out: pd.DataFrame
) -> None:
    reordered = held_out.assign(title=held_out["title"].map(lambda title: " ".join(reversed(title.split()))))
    assert (reordered["title"] != held_out["title"]).any()
    np.testing.assert_array_equal(models.probabilities(reordered), models.probabilities(held_out))
    np.testing.assert_array_equal(models.recommendation(reordered), models.recommendation(held_out))


def test_the_model_follows_the_ground_truth_it_learned(models: TrainedModels, held_out: pd.DataFrame) -> None:
    """The twins above mean something only if the model learned the catalogue: most picks match the oracle's."""
    truth = ground_truth(held_out)
    oracle = recommend(truth[[f"p_{t}" for t in PACKAGE_TYPES]].to_numpy(), THRESHOLDS)
    agreement = float((models.recommendation(held_out) == oracle).mean())
    assert agreement > 0.8, agreement
