"""The feature recipe: one-hot against the training vocabulary, unseen values counted, not fatal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from packwise.config import FeatureConfig
from packwise.errors import DataValidationError
from packwise.features import FeatureSpec, build_features, fit_feature_spec

FEATURES = FeatureConfig(numeric=["weight_kg"], boolean=["is_liquid"], categorical=["category"], derived=[])


def _products(categories: list[str | None]) -> pd.DataFrame:
    n = len(categories)
    return pd.DataFrame(
        {
            "product_id": [f"P{i}" for i in range(n)],
            "weight_kg": np.linspace(0.1, 2.0, n),
            "is_liquid": [i % 2 == 0 for i in range(n)],
            "category": pd.array(categories, dtype="string"),
        }
    )


def test_vocabulary_is_most_frequent_first_and_travels_as_json() -> None:
    spec = fit_feature_spec(_products(["books", "toys", "books", "apparel", "toys", "books"]), FEATURES)
    assert spec.categorical == {"category": ("books", "toys", "apparel")}
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert spec.names == ["weight_kg", "is_liquid", "category=books", "category=toys", "category=apparel"]


def test_unseen_and_missing_categories_score_as_zeros_and_unseen_are_counted() -> None:
    spec = fit_feature_spec(_products(["books", "toys"]), FEATURES)
    rows = build_features(_products(["toys", "garden", None, "books", "garden"]), spec)
    onehot = rows.dense[:, 2:]
    assert onehot.tolist() == [[0, 1], [0, 0], [0, 0], [1, 0], [0, 0]]
    assert rows.unseen == {"category": 2}  # the null is missing, not unseen


def test_dictionary_encoded_categories_give_the_same_rows_and_counts() -> None:
    # A caller's frame may hold categorical columns as pandas Categorical instead of strings: same rows,
    # same unseen counts.
    spec = fit_feature_spec(_products(["books", "toys"]), FEATURES)
    values = ["toys", "garden", None, "books", "garden", "toys"]
    as_strings = build_features(_products(values), spec)
    categorical = _products(values).assign(category=lambda f: f["category"].astype("category"))
    as_dictionary = build_features(categorical, spec)
    np.testing.assert_array_equal(as_dictionary.dense, as_strings.dense)
    assert as_dictionary.unseen == as_strings.unseen == {"category": 2}


def test_derived_features_follow_the_dimensions() -> None:
    features = FeatureConfig(
        numeric=["weight_kg"], boolean=[], categorical=[], derived=["volume_cm3", "density_kg_per_l"]
    )
    products = pd.DataFrame({"weight_kg": [2.0], "length_cm": [10.0], "width_cm": [10.0], "height_cm": [10.0]})
    rows = build_features(products, fit_feature_spec(products, features))
    assert rows.dense[0].tolist() == pytest.approx([2.0, 1000.0, 2.0])


def test_a_missing_column_is_a_one_line_error() -> None:
    spec = fit_feature_spec(_products(["books"]), FEATURES)
    with pytest.raises(DataValidationError, match="'weight_kg' is missing"):
        build_features(_products(["books"]).drop(columns=["weight_kg"]), spec)


def test_arrow_batches_give_the_rows_and_counts_a_pandas_frame_gives() -> None:
    import pyarrow as pa

    from packwise.synthetic import generate_products

    products = generate_products(3_000, seed=5)
    spec = fit_feature_spec(products.iloc[:2_000], FeatureConfig())
    rng = np.random.default_rng(1)
    scored = products.copy()
    for col in ("length_cm", "weight_kg", "price"):
        scored.loc[rng.random(len(scored)) < 0.1, col] = np.nan
    scored["is_liquid"] = scored["is_liquid"].astype(object)
    scored.loc[scored.index[:5], "is_liquid"] = None  # a nullable boolean
    scored.loc[rng.random(len(scored)) < 0.1, "category"] = "never-seen"
    scored.loc[rng.random(len(scored)) < 0.1, "material"] = None
    scored["fragility"] = (scored["fragility"] * 1000).round().astype("int64")  # an integer column
    expected = build_features(scored, spec)
    table = pa.Table.from_pandas(scored, preserve_index=False)
    dictionary = table.set_column(
        table.schema.get_field_index("category"), "category", table.column("category").dictionary_encode()
    )
    for products_in in (table.to_batches()[0], table, dictionary.combine_chunks().to_batches()[0]):
        got = build_features(products_in, spec)
        np.testing.assert_array_equal(got.dense, expected.dense)
        assert got.unseen == expected.unseen and expected.unseen["category"] > 0


def test_a_products_row_is_the_same_wherever_it_sits_in_the_frame() -> None:
    # The rows are filled a block of rows at a time: a product's row must not depend on its position,
    # the block edges included.
    from packwise import features
    from packwise.synthetic import generate_products

    n = 2 * features._FILL_ROWS + 7
    products = generate_products(n, seed=11)
    spec = fit_feature_spec(products.iloc[:3_000], FeatureConfig())
    products.loc[products.index[::97], "category"] = "never-seen"
    products.loc[products.index[::89], "weight_kg"] = np.nan
    whole = build_features(products, spec)
    edges = [0, features._FILL_ROWS - 1, features._FILL_ROWS, 2 * features._FILL_ROWS, n - 1]
    for i in edges:
        one = build_features(products.iloc[[i]], spec)
        np.testing.assert_array_equal(whole.dense[i], one.dense[0])
    reversed_rows = build_features(products.iloc[::-1], spec)
    np.testing.assert_array_equal(reversed_rows.dense[::-1], whole.dense)
    assert whole.dense.flags["C_CONTIGUOUS"] and whole.unseen["category"] == len(products.index[::97])
