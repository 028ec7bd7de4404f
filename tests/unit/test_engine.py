"""oneDAL scores every model type like XGBoost does, with missing values and unseen categories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.artifact import load_model_artifact
from packwise.config import FeatureConfig, ModelConfig
from packwise.engine import onedal_available, resolve_engine, uses_onedal
from packwise.errors import ConfigError
from packwise.models.base import predict
from packwise.scoring import Scorer, ScoringModel
from packwise.split import read_split
from packwise.synthetic import SeedSpec
from packwise.training import train as train_candidate
from tests.split_data import synthetic_splits

SPEC = SeedSpec(seed=9, n_products=3_000, weeks=1, labels_per_week=2_500)
needs_onedal = pytest.mark.skipif(not onedal_available(), reason="daal4py does not import here")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    train, val, products = synthetic_splits(tmp_path_factory.mktemp("snap"), SPEC)
    # Scoring rows the models never saw in that shape: missing numbers and categories outside the vocabulary.
    rng = np.random.default_rng(3)
    scored = products.copy()
    for col in ("length_cm", "weight_kg", "fragility", "price"):
        scored.loc[rng.random(len(scored)) < 0.15, col] = np.nan
    scored.loc[rng.random(len(scored)) < 0.2, "category"] = "never-seen-category"
    scored.loc[rng.random(len(scored)) < 0.1, "material"] = None
    return train, val, scored


@needs_onedal
@pytest.mark.parametrize("model_type", ["xgboost", "xgboost_text", "stacked_text"])
def test_onedal_agrees_with_xgboost(
    data: tuple[Path, Path, pd.DataFrame], tmp_path: Path, model_type: str
) -> None:
    train, val, scored = data
    model = ModelConfig(type=model_type, num_boost_round=60, text_hash_features=256)
    out = tmp_path / "model.tar.gz"
    train_candidate(train, val, "mailer", FeatureConfig(), model, out, "key", "fingerprint")
    loaded = load_model_artifact(out)
    ref, rows = predict(loaded.booster, loaded.spec, scored, "xgboost")
    got, _ = predict(loaded.booster, loaded.spec, scored, "onedal")
    assert rows.unseen.get("category", 0) > 0 and np.isnan(rows.dense).any()
    # hashed text rows are sparse: XGBoost scores them under any engine
    assert uses_onedal("onedal", rows.matrix()) is (model_type != "xgboost_text")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    validation, _ = read_split(val, "mailer")
    np.testing.assert_allclose(
        predict(loaded.booster, loaded.spec, validation, "onedal")[0],
        predict(loaded.booster, loaded.spec, validation, "xgboost")[0],
        rtol=0,
        atol=1e-6,
    )


@needs_onedal
def test_scorer_file_identical_recommendations(data: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    train, val, scored = data
    models = []
    for i, package_type in enumerate(SPEC.package_types):
        out = tmp_path / f"{package_type}.tar.gz"
        train_candidate(train, val, package_type, FeatureConfig(), ModelConfig(num_boost_round=40), out, "k", "f")
        loaded = load_model_artifact(out)
        models.append(ScoringModel(package_type, i + 1, loaded.booster, loaded.spec, 0.5))
    shard = tmp_path / "shard.parquet"
    pq.write_table(pa.Table.from_pandas(scored, preserve_index=False), shard)
    outputs = {}
    for engine in ("xgboost", "onedal"):
        scorer = Scorer(models, threads=1, engine=engine)
        assert scorer.engine == engine
        scorer.score_file(shard, tmp_path / f"{engine}.parquet", batch_rows=1_024)
        outputs[engine] = pq.read_table(tmp_path / f"{engine}.parquet").to_pandas()
    a, b = outputs["xgboost"], outputs["onedal"]
    assert len(a) == len(scored)
    assert (a["recommended_type"].astype(str) == b["recommended_type"].astype(str)).mean() > 0.999
    for package_type in SPEC.package_types:
        col = f"prob_{package_type}"
        np.testing.assert_allclose(b[col], a[col], rtol=0, atol=1e-6)


def test_engine_resolution() -> None:
    assert resolve_engine("xgboost") == "xgboost"
    assert resolve_engine("auto") == ("onedal" if onedal_available() else "xgboost")
    with pytest.raises(ConfigError, match="auto, xgboost or onedal"):
        resolve_engine("treelite")
    if not onedal_available():
        with pytest.raises(ConfigError, match="scikit-learn-intelex"):
            resolve_engine("onedal")


@needs_onedal
def test_a_scoring_process_converts_each_booster_once_and_writes_nothing_beside_the_model(
    data: tuple[Path, Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conversion is cached per booster per process, in memory: a model unpickled from a file predicted
    25-30% slower than a fresh conversion, so nothing is kept beside the model file."""
    import daal4py.mb

    from packwise.engine import predict_proba
    from packwise.scoring import Scorer, ScoringModel

    train, val, scored = data
    out = tmp_path / "model.tar.gz"
    train_candidate(train, val, "mailer", FeatureConfig(), ModelConfig(num_boost_round=30), out, "k", "f")
    loaded = load_model_artifact(out)
    matrix = predict(loaded.booster, loaded.spec, scored, "xgboost")[1].dense
    converted: list[Any] = []
    convert = daal4py.mb.convert_model
    monkeypatch.setattr(daal4py.mb, "convert_model", lambda b: converted.append(b) or convert(b))
    scorer = Scorer([ScoringModel("mailer", 1, loaded.booster, loaded.spec, 0.5)], engine="onedal")
    assert converted == [loaded.booster]  # before the first batch
    first = predict_proba(loaded.booster, matrix, "onedal")
    np.testing.assert_array_equal(predict_proba(loaded.booster, matrix, "onedal"), first)
    assert len(converted) == 1 and scorer.engine == "onedal"
    other = load_model_artifact(out)  # another booster object (another task): converted for itself
    np.testing.assert_array_equal(predict_proba(other.booster, matrix, "onedal"), first)
    assert len(converted) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]
