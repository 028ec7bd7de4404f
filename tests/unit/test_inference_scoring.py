"""The streaming scorer and the recommendation rule, and the same feature row through training and serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.artifact import load_model_artifact, save_model_artifact
from packwise.config import FeatureConfig, ModelConfig
from packwise.features import fit_feature_spec
from packwise.models import get_model_type
from packwise.models.base import predict
from packwise.scoring import RECOMMENDED, Scorer, ScoringModel, prob_column, recommend
from packwise.synthetic import PACKAGE_TYPES, generate_products, ground_truth

THRESHOLDS = {"own_container": 0.5, "bag": 0.6, "mailer": 0.5, "box": 0.5}


def train_models(directory: Path, n: int = 3_000, seed: int = 3, rounds: int = 20) -> dict[str, Path]:
    """One small model file per synthetic package type, trained on the ground truth."""
    products = generate_products(n, seed)
    truth = ground_truth(products)
    model_cfg = ModelConfig(num_boost_round=rounds)
    plugin = get_model_type("xgboost")
    spec = plugin.fit_spec(products, FeatureConfig(), model_cfg)
    from packwise.features import build_features

    rows = build_features(products, spec)
    paths = {}
    for package_type in PACKAGE_TYPES:
        booster = plugin.train(rows, truth[f"suitable_{package_type}"].to_numpy(dtype=np.int8), model_cfg)
        paths[package_type] = save_model_artifact(
            booster, spec, "xgboost", package_type, directory / package_type / "model.tar.gz"
        )
    return paths


def models_entry(paths: dict[str, Path], versions: dict[str, int] | None = None) -> dict[str, Any]:
    """A `resolve_models`-shaped result for model files outside any registry."""
    models = {}
    for package_type, path in paths.items():
        loaded = load_model_artifact(path)
        models[package_type] = {
            "version": (versions or {}).get(package_type, 1),
            "status": "Approved",
            "pinned": False,
            "model_type": "xgboost",
            "threshold": THRESHOLDS[package_type],
            "path": str(path),
            "spec": loaded.spec.to_json(),
        }
    return {"package_types": list(PACKAGE_TYPES), "models": models}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_models(tmp_path_factory.mktemp("models"))


def _scoring_models(paths: dict[str, Path]) -> list[ScoringModel]:
    out = []
    for t in PACKAGE_TYPES:
        loaded = load_model_artifact(paths[t])
        out.append(ScoringModel(t, 1, loaded.booster, loaded.spec, THRESHOLDS[t]))
    return out


def test_recommend_picks_the_least_protective_type_that_clears_its_threshold() -> None:
    prob = np.array(
        [
            [0.9, 0.9, 0.9, 0.9],  # everything clears: the least protective
            [0.1, 0.7, 0.9, 0.9],  # bag clears
            [0.1, 0.59, 0.5, 0.9],  # bag just misses its 0.6, mailer sits exactly on 0.5
            [0.1, 0.1, 0.1, 0.1],  # nothing clears: box, the fallback
            [0.1, 0.1, 0.1, 0.9],
        ],
        dtype=np.float32,
    )
    rec = recommend(prob, [0.5, 0.6, 0.5, 0.5])
    assert rec.tolist() == [0, 1, 2, 3, 3]


def test_recommend_rejects_a_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="expected probabilities of 3"):
        recommend(np.zeros((2, 4)), [0.5, 0.5, 0.5])


def _write_products(path: Path, products: pd.DataFrame) -> Path:
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), path)
    return path


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "sequential"])
def test_score_file_streams_batches_and_matches_the_evaluation_path(
    model_files: dict[str, Path], tmp_path: Path, prefetch: bool
) -> None:
    products = generate_products(2_500, seed=99, first_index=500_000)
    products.loc[products.index[:7], "category"] = "space_equipment"  # never seen in training
    src = _write_products(tmp_path / "in.parquet", products)
    scorer = Scorer(_scoring_models(model_files), threads=1, prefetch=prefetch)
    stats = scorer.score_file(src, tmp_path / "out.parquet", batch_rows=1_000)

    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 3  # one per batch
    assert out["product_id"].tolist() == products["product_id"].tolist()
    prob = np.empty((len(products), len(PACKAGE_TYPES)), dtype=np.float32)
    for j, t in enumerate(PACKAGE_TYPES):
        loaded = load_model_artifact(model_files[t])
        expected, _ = predict(loaded.booster, loaded.spec, products)  # what `evaluate` does
        np.testing.assert_allclose(out[prob_column(t)].to_numpy(), expected, rtol=1e-6)
        prob[:, j] = out[prob_column(t)].to_numpy()
    expected_rec = [PACKAGE_TYPES[i] for i in recommend(prob, [THRESHOLDS[t] for t in PACKAGE_TYPES])]
    assert out[RECOMMENDED].astype(str).tolist() == expected_rec
    assert stats.rows == len(products)
    assert sum(stats.recommended.values()) == len(products)
    assert stats.recommended == {t: expected_rec.count(t) for t in PACKAGE_TYPES}
    assert stats.unseen == {"category": 7, "material": 0}
    assert 0 < stats.seconds_predict <= stats.seconds


def test_a_failing_batch_stops_the_prefetch_thread_and_raises(model_files: dict[str, Path], tmp_path: Path) -> None:
    from packwise.errors import DataValidationError

    products = generate_products(3_000, seed=98)
    products["fragility"] = "very"  # a word where a number belongs
    src = _write_products(tmp_path / "in.parquet", products)
    with pytest.raises(DataValidationError, match="'fragility' has type"):
        Scorer(_scoring_models(model_files), prefetch=True).score_file(src, tmp_path / "out.parquet", batch_rows=1_000)
    assert not (tmp_path / "out.parquet").exists()
    assert not list(tmp_path.glob(".out.parquet.*"))


def test_a_failing_write_in_the_writer_thread_raises_and_leaves_no_file(
    model_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With prefetch, a thread of its own encodes and writes the scored batches: a write that fails there
    # (here a full disk on the second batch) reaches the caller, and no scored file, whole or part, is left.
    products = generate_products(5_000, seed=97)
    src = _write_products(tmp_path / "in.parquet", products)
    real_write = pq.ParquetWriter.write_batch
    written: list[int] = []

    def write_batch(self: pq.ParquetWriter, batch: pa.RecordBatch, *args: Any, **kwargs: Any) -> None:
        if written:
            raise OSError(28, "No space left on device")
        written.append(batch.num_rows)
        real_write(self, batch, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", write_batch)
    scorer = Scorer(_scoring_models(model_files), prefetch=True)
    with pytest.raises(OSError, match="No space left on device"):
        scorer.score_file(src, tmp_path / "out.parquet", batch_rows=1_000)
    assert written == [1_000]
    assert not (tmp_path / "out.parquet").exists()
    assert not list(tmp_path.glob(".out.parquet.*"))


def test_empty_file_gives_an_empty_scored_file(model_files: dict[str, Path], tmp_path: Path) -> None:
    products = generate_products(10, seed=5).iloc[:0]
    src = _write_products(tmp_path / "in.parquet", products)
    stats = Scorer(_scoring_models(model_files)).score_file(src, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and stats.rows == 0
    assert RECOMMENDED in table.column_names


def test_the_same_product_gives_the_same_feature_row_for_training_and_serving(tmp_path: Path) -> None:
    """Training: snapshot -> split -> read_split -> build_features. Serving: extract -> prepare -> shard -> Scorer."""
    from packwise.config import InferenceConfig
    from packwise.inference import extract_products, prepare_products, shard_products
    from packwise.snapshot import extract_snapshot
    from packwise.split import read_split, split_snapshot
    from tests.conftest import make_config, seed

    cfg = make_config(tmp_path / "state")
    seed(cfg, seed=5, n_products=2_000, weeks=2, labels_per_week=600)
    info = extract_snapshot(cfg, 1)
    train_path = tmp_path / "train.parquet"
    split_snapshot(info.path, train_path, tmp_path / "val.parquet", 0.8, 42, cfg.package_type_names)
    products, labels = read_split(train_path, "mailer")
    spec = fit_feature_spec(products, cfg.features)
    from packwise.features import build_features

    training_rows = build_features(products, spec).dense
    booster = get_model_type("xgboost").train(build_features(products, spec), labels, ModelConfig(num_boost_round=5))
    model = save_model_artifact(booster, spec, "xgboost", "mailer", tmp_path / "m.tar.gz")

    inference = InferenceConfig(shard_target_rows=300, batch_rows=1_024)
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "parity")
    models = {
        "package_types": ["mailer"],
        "models": {
            "mailer": {"version": 1, "threshold": 0.5, "path": str(model), "spec": spec.to_json(), "status": "Approved"}
        },
    }
    plan = prepare_products(Path(record["extract_dir"]), models, "monthly", inference.batch_rows)
    shards = shard_products(plan, inference)
    assert len(shards) > 3
    scorer = Scorer([ScoringModel("mailer", 1, load_model_artifact(model).booster, spec, 0.5)])
    serving: dict[str, np.ndarray] = {}
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=97):
            frame = batch.to_pandas()
            rows = next(iter(scorer.features(frame).values())).dense
            serving.update(zip(frame["product_id"], rows, strict=True))
    assert len(serving) == record["n_products"]
    for i in range(len(products)):
        np.testing.assert_array_equal(serving[products["product_id"].iloc[i]], training_rows[i])
    json.dumps(plan)  # the plan travels as JSON
