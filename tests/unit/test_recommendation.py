"""The cost-aware recommendation policy, its configuration, calibration measurement, and scoring with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from packwise.artifact import load_model_artifact
from packwise.config import parse_config
from packwise.errors import ConfigError
from packwise.inference import inference_summary_markdown, score_shard
from packwise.recommendation import (
    IDENTITY,
    Calibration,
    cost_model,
    expected_cost_of,
    fit_isotonic,
    recommend_by_cost,
    reliability,
)
from packwise.scoring import RECOMMENDED, Scorer, ScoringModel, recommend
from packwise.synthetic import PACKAGE_TYPES, PACKAGING_COST, generate_products
from tests.unit.test_inference_scoring import models_entry, train_models

COSTS = [PACKAGING_COST[t] for t in PACKAGE_TYPES]  # 0, 0.12, 0.35, 1.10


def test_cost_policy_picks_the_lowest_expected_cost_where_the_threshold_rule_takes_the_first_clear() -> None:
    prob = np.array(
        [
            [0.55, 0.90, 0.97, 0.99],  # own container clears 0.5 but risks 0.45 x 25 = 11.25; mailer: 0.35 + 0.75
            [0.999, 0.2, 0.2, 0.99],  # own container is nearly safe and free
            [0.1, 0.1, 0.1, 0.9],  # nothing but a box
        ]
    )
    assert recommend(prob, [0.5] * 4).tolist() == [0, 0, 3]
    assert recommend_by_cost(prob, COSTS, 25.0).tolist() == [2, 0, 3]
    expected = expected_cost_of(prob, np.array([2, 0, 3]), COSTS, 25.0)
    assert expected == pytest.approx((0.35 + 25 * 0.03) + (25 * 0.001) + (1.10 + 25 * 0.1))
    # with a cheap damage the cheapest package wins
    assert recommend_by_cost(prob, COSTS, 0.01).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="4 package types"):
        recommend_by_cost(prob[:, :3], COSTS, 25.0)


def test_the_cost_policy_needs_every_cost_and_says_which_is_missing() -> None:
    types = [{"name": t, "cost": c} for t, c in zip(PACKAGE_TYPES, COSTS, strict=True)]
    cfg = parse_config({"package_types": types, "inference": {"policy": "cost", "damage_cost": 25}}, "t").resolved()
    assert cfg.inference.package_costs == dict(zip(PACKAGE_TYPES, COSTS, strict=True))
    model = cost_model("cost", cfg.inference.package_costs, 25.0, PACKAGE_TYPES)
    assert model is not None and model.costs == tuple(COSTS)
    with pytest.raises(ConfigError, match=r"package_types\[\]\.cost of bag"):
        parse_config(
            {"package_types": [{**t, "cost": None} if t["name"] == "bag" else t for t in types],
             "inference": {"policy": "cost", "damage_cost": 25}},
            "t",
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"inference\.damage_cost"):
        parse_config({"package_types": types, "inference": {"policy": "cost"}}, "t")
    # threshold without costs: no cost model at all; with them: expected cost is still reported
    assert cost_model("threshold", None, None, PACKAGE_TYPES) is None
    threshold = cost_model("threshold", cfg.inference.package_costs, 25.0, PACKAGE_TYPES)
    assert threshold is not None and threshold.policy == "threshold"


def test_reliability_measures_calibration_and_isotonic_repairs_a_distorted_model() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    labels = (rng.random(20_000) < p).astype(np.int8)
    assert reliability(labels, p).ece < 0.02
    distorted = p**3  # far too low
    bad = reliability(labels, distorted)
    assert bad.ece > 0.15 and bad.max_gap > 0.2
    calibration = fit_isotonic(labels, distorted)
    assert reliability(labels, calibration(distorted)).ece < 0.02
    again = Calibration.model_validate_json(calibration.model_dump_json())
    assert np.array_equal(again(distorted), calibration(distorted))
    assert np.array_equal(IDENTITY(p), p)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_models(tmp_path_factory.mktemp("models"))


def test_scoring_with_the_cost_policy_writes_its_picks_and_the_expected_cost(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    products = generate_products(1_500, seed=21)
    shard = tmp_path / "shard.parquet"
    products.to_parquet(shard)
    plan = models_entry(model_files)
    plan["n_products"] = len(products)
    types = [{"name": t, "cost": c} for t, c in zip(PACKAGE_TYPES, COSTS, strict=True)]
    cfg = parse_config({"package_types": types, "inference": {"policy": "cost", "damage_cost": 25}}, "t").resolved()
    stats = score_shard(shard, plan, cfg.compute, None, cfg.inference, tmp_path / "scored.parquet")

    scored = pq.read_table(tmp_path / "scored.parquet").to_pandas()
    prob = scored[[f"prob_{t}" for t in PACKAGE_TYPES]].to_numpy(dtype=np.float32)
    picks = recommend_by_cost(prob, COSTS, 25.0)
    assert scored[RECOMMENDED].astype(str).tolist() == [PACKAGE_TYPES[i] for i in picks]
    assert stats["expected_cost"] == pytest.approx(expected_cost_of(prob, picks, COSTS, 25.0), rel=1e-6)
    # the threshold rule on the same probabilities costs more in expectation
    models = [
        ScoringModel(t, 1, load_model_artifact(model_files[t]).booster, load_model_artifact(model_files[t]).spec, 0.5)
        for t in PACKAGE_TYPES
    ]
    by_threshold = Scorer(models, threads=1).score_file(shard, tmp_path / "threshold.parquet")
    assert by_threshold.expected_cost is None  # no cost model given
    assert expected_cost_of(prob, recommend(prob, [0.5] * 4), COSTS, 25.0) > stats["expected_cost"]

    summary = {"run_id": "r", "mode": "monthly", "loaded": True, "already_loaded": False, "n_products": 1_500,
               "package_types": [], "expected_cost": stats["expected_cost"]}  # fmt: skip
    _, body = inference_summary_markdown(summary)
    assert f"Expected cost (packaging + damage): {stats['expected_cost']:,.2f}" in body
