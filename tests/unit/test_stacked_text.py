"""`stacked_text`: the title's linear model travels beside the booster and scores the same everywhere."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.artifact import BOOSTER_FILE, STACKED_FILE, load_model_artifact
from packwise.config import FeatureConfig, ModelConfig
from packwise.errors import DataValidationError, PackwiseError
from packwise.evaluation import score_metrics
from packwise.models import get_model_type
from packwise.models.base import predict
from packwise.models.stacked_text import LOGIT_COLUMN, LinearTextModel, out_of_fold_logits
from packwise.scoring import Scorer, ScoringModel, prob_column
from packwise.split import read_split
from packwise.synthetic import SeedSpec
from packwise.training import train as train_candidate
from tests.split_data import synthetic_splits

SPEC = SeedSpec(seed=4, n_products=4_000, weeks=1, labels_per_week=3_000)
MODEL = ModelConfig(type="stacked_text", num_boost_round=60)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    train, val, _ = synthetic_splits(tmp_path_factory.mktemp("snap"), SPEC)
    return train, val


@pytest.fixture(scope="module")
def mailer_model(splits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model.tar.gz"
    train_candidate(splits[0], splits[0], "mailer", FeatureConfig(), MODEL, out, "key", "fingerprint")
    return out


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None
            out[m.name] = fh.read()
        return out


def _rewrite(path: Path, out: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_archive_holds_the_booster_and_the_text_model_which_score_the_same_after_reload(
    splits: tuple[Path, Path], mailer_model: Path
) -> None:
    train, val = splits
    assert sorted(_members(mailer_model)) == sorted([BOOSTER_FILE, STACKED_FILE])
    loaded = load_model_artifact(mailer_model)
    assert loaded.model_type == "stacked_text" and loaded.package_type == "mailer"
    assert loaded.spec.stacked is not None and loaded.spec.names[-1] == LOGIT_COLUMN
    assert "title" in loaded.spec.input_columns and loaded.spec.text_hash_features == 0

    products, labels = read_split(train, "mailer")
    booster, spec = get_model_type("stacked_text").fit(products, labels, FeatureConfig(), MODEL)
    val_products, val_labels = read_split(val, "mailer")
    in_memory, _ = predict(booster, spec, val_products)
    reloaded, rows = predict(loaded.booster, loaded.spec, val_products)
    assert rows.matrix().shape[1] == len(loaded.spec.names)
    np.testing.assert_array_equal(in_memory, reloaded)
    assert score_metrics(val_labels, reloaded, 0.5).auc > 0.85


def test_streaming_scorer_runs_the_text_model_with_no_change(
    splits: tuple[Path, Path], mailer_model: Path, tmp_path: Path
) -> None:
    _, val = splits
    products, _ = read_split(val, "mailer")
    shard = tmp_path / "shard.parquet"
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), shard)
    loaded = load_model_artifact(mailer_model)
    scorer = Scorer([ScoringModel("mailer", 1, loaded.booster, loaded.spec, 0.5)], threads=1)
    assert "title" in scorer.input_columns
    stats = scorer.score_file(shard, tmp_path / "scored.parquet", batch_rows=97)
    scored = pq.read_table(tmp_path / "scored.parquet").to_pandas()
    expected, _ = predict(loaded.booster, loaded.spec, products)
    assert stats.rows == len(products)
    np.testing.assert_allclose(scored[prob_column("mailer")].to_numpy(), expected, rtol=0, atol=1e-6)


def test_two_package_types_do_not_share_a_recipe_in_the_scorer(
    splits: tuple[Path, Path], mailer_model: Path, tmp_path: Path
) -> None:
    # Same snapshot and feature config, different labels: the text models differ, so must the recipe keys.
    bag = tmp_path / "bag.tar.gz"
    train_candidate(splits[0], splits[0], "bag", FeatureConfig(), MODEL, bag, "key", "fingerprint")
    a, b = load_model_artifact(mailer_model).spec, load_model_artifact(bag).spec
    assert a.to_json() != b.to_json()


def test_same_data_and_seed_give_the_same_bytes_and_another_seed_other_folds(
    splits: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = splits
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    train_candidate(train, train, "bag", FeatureConfig(), MODEL, a, "k", "f")
    train_candidate(train, train, "bag", FeatureConfig(), MODEL, b, "k", "f")
    assert a.read_bytes() == b.read_bytes()
    products, labels = read_split(train, "bag")
    titles = products["title"].tolist()
    assert not np.array_equal(out_of_fold_logits(titles, labels, 0), out_of_fold_logits(titles, labels, 1))


def test_booster_learns_from_out_of_fold_logits_not_the_in_sample_ones(splits: tuple[Path, Path]) -> None:
    # The full-data text model has seen every training label; its in-sample logit is overconfident.
    # The out-of-fold logit is as good on training rows as the full model's is on new products.
    train, val = splits
    products, labels = read_split(train, "own_container")
    val_products, val_labels = read_split(val, "own_container")
    titles = products["title"].tolist()
    text = LinearTextModel.fit("title", titles, labels)
    in_sample = score_metrics(labels, 1 / (1 + np.exp(-text.logit(titles))), 0.5).auc
    oof = score_metrics(labels, 1 / (1 + np.exp(-out_of_fold_logits(titles, labels, 0))), 0.5).auc
    held_out = score_metrics(val_labels, 1 / (1 + np.exp(-text.logit(val_products["title"].tolist()))), 0.5).auc
    assert in_sample > oof + 0.02
    assert abs(oof - held_out) < 0.03


@pytest.mark.parametrize("package_type", list(SPEC.package_types))
def test_matches_the_tabular_type_on_the_synthetic_data(
    splits: tuple[Path, Path], tmp_path: Path, package_type: str
) -> None:
    train, val = splits
    products, labels = read_split(val, package_type)
    auc = {}
    for model_type in ("xgboost", "stacked_text"):
        out = tmp_path / f"{model_type}.tar.gz"
        model = MODEL.model_copy(update={"type": model_type})
        train_candidate(train, train, package_type, FeatureConfig(), model, out, "k", "f")
        loaded = load_model_artifact(out)
        auc[model_type] = score_metrics(labels, predict(loaded.booster, loaded.spec, products)[0], 0.5).auc
    assert auc["stacked_text"] > 0.85
    assert auc["stacked_text"] > auc["xgboost"] - 0.02


def test_a_tampered_or_missing_text_model_is_refused(mailer_model: Path, tmp_path: Path) -> None:
    members = _members(mailer_model)
    tampered = dict(members)
    tampered[STACKED_FILE] = members[STACKED_FILE].replace(b'"coef":[', b'"coef":[1.5,', 1)
    with pytest.raises(PackwiseError, match="coefficients"):
        load_model_artifact(_rewrite(mailer_model, tmp_path / "t.tar.gz", tampered))
    other = LinearTextModel.from_bytes(members[STACKED_FILE])
    changed = dict(members)
    changed[STACKED_FILE] = LinearTextModel(
        other.column, other.vocabularies, other.idf, other.coef, other.intercept + 1.0
    ).to_bytes()
    with pytest.raises(DataValidationError, match="sha256"):
        load_model_artifact(_rewrite(mailer_model, tmp_path / "c.tar.gz", changed))
    missing = {BOOSTER_FILE: members[BOOSTER_FILE]}
    with pytest.raises(PackwiseError, match=STACKED_FILE):
        load_model_artifact(_rewrite(mailer_model, tmp_path / "m.tar.gz", missing))


def test_too_few_labels_of_a_class_is_a_one_line_error(splits: tuple[Path, Path]) -> None:
    products, labels = read_split(splits[0], "mailer")
    few = np.zeros(len(labels), dtype=labels.dtype)
    few[:3] = 1
    with pytest.raises(DataValidationError, match=r"at least 5 positive .* got 3 and"):
        get_model_type("stacked_text").fit(products, few, FeatureConfig(), MODEL)


def test_inference_plans_from_the_recipe_json_alone_and_requires_the_title(
    splits: tuple[Path, Path], mailer_model: Path, tmp_path: Path
) -> None:
    from packwise.features import FeatureSpec, build_features
    from packwise.inference import prepare_products

    recipe = load_model_artifact(mailer_model).spec.to_json()
    planned = FeatureSpec.from_json(recipe)  # as the inference plan holds it: no text model attached
    assert planned.to_json() == recipe and planned.text_columns == ["title"]
    with pytest.raises(PackwiseError, match="load_model_artifact"):
        build_features(read_split(splits[1], "mailer")[0], planned)
    models = {
        "package_types": ["mailer"],
        "models": {"mailer": {"version": 1, "threshold": 0.5, "path": str(mailer_model), "spec": recipe}},
    }
    products, _ = read_split(splits[1], "mailer")
    extract = tmp_path / "extract"
    extract.mkdir()
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), extract / "products.parquet")
    plan = prepare_products(extract, models, "monthly", 500)
    assert "title" in plan["columns"] and plan["n_products"] == len(products)
    pq.write_table(
        pa.Table.from_pandas(products.drop(columns="title"), preserve_index=False), extract / "products.parquet"
    )
    with pytest.raises(DataValidationError, match=r"'title' is missing .*mailer v1"):
        prepare_products(extract, models, "monthly", 500)
    numbers = products.assign(title=1.0)
    pq.write_table(pa.Table.from_pandas(numbers, preserve_index=False), extract / "products.parquet")
    with pytest.raises(DataValidationError, match="title"):
        prepare_products(extract, models, "monthly", 500)


def test_text_column_of_repeated_missing_and_no_titles(mailer_model: Path) -> None:
    text = load_model_artifact(mailer_model).spec.stacked
    assert isinstance(text, LinearTextModel)
    frame = pd.DataFrame({"title": ["Classic wool socks", None, "Classic wool socks", "", "Boxed glass vase"]})
    one_by_one = [text.logit(["" if pd.isna(t) else t])[0] for t in frame["title"]]
    np.testing.assert_array_equal(text.transform(frame)[:, 0], np.asarray(one_by_one, dtype=np.float32))
    assert text.transform(frame.iloc[:0]).shape == (0, 1)
