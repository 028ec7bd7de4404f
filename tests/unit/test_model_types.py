"""Every shipped model type trains, saves in the SageMaker layout, loads back and scores the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from packwise.artifact import load_model_artifact
from packwise.config import FeatureConfig, ModelConfig
from packwise.errors import ConfigError
from packwise.evaluation import score_metrics
from packwise.models import get_model_type, known_model_types
from packwise.models.base import predict
from packwise.split import read_split
from packwise.synthetic import SeedSpec
from packwise.training import train as train_candidate
from tests.split_data import synthetic_splits

SPEC = SeedSpec(seed=4, n_products=4_000, weeks=1, labels_per_week=3_000)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    train, val, _ = synthetic_splits(tmp_path_factory.mktemp("snap"), SPEC)
    return train, val


@pytest.mark.parametrize("model_type", ["xgboost", "xgboost_text", "stacked_text"])
def test_model_type_trains_saves_loads_and_scores(splits: tuple[Path, Path], tmp_path: Path, model_type: str) -> None:
    train, val = splits
    model = ModelConfig(type=model_type, num_boost_round=60, text_hash_features=256)
    out = tmp_path / "model.tar.gz"
    summary = train_candidate(train, val, "mailer", FeatureConfig(), model, out, "key", "fingerprint").summary
    assert summary.model_type == model_type and summary.label_count > 1_000
    loaded = load_model_artifact(out)
    assert loaded.model_type == model_type
    assert (loaded.spec.text_column == "title") is (model_type == "xgboost_text")
    products, labels = read_split(val, "mailer")
    prob, rows = predict(loaded.booster, loaded.spec, products)
    assert rows.matrix().shape[1] == len(loaded.spec.names)
    assert score_metrics(labels, prob, 0.5).auc > 0.85


def test_unknown_model_type_names_the_known_ones() -> None:
    assert {"xgboost", "xgboost_text", "stacked_text"} <= set(known_model_types())
    with pytest.raises(ConfigError, match=r"known: .*xgboost_text"):
        get_model_type("lightgbm")


def test_same_booster_same_bytes(splits: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = splits
    model = ModelConfig(num_boost_round=20)
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    train_candidate(train, val, "bag", FeatureConfig(), model, a, "k", "f")
    train_candidate(train, val, "bag", FeatureConfig(), model, b, "k", "f")
    assert a.read_bytes() == b.read_bytes()
