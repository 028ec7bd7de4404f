"""validate_snapshot / validate_products_frame: every bad input names its problem and its fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.config import FeatureConfig
from packwise.errors import DataValidationError
from packwise.validation import SnapshotStats, validate_products_frame, validate_snapshot

TYPES = ["own_container", "bag", "mailer", "box"]
FEATURES = FeatureConfig()


def make_products(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "product_id": [f"p{i:04d}" for i in range(n)],
            "title": [f"item {i}" for i in range(n)],
            "category": rng.choice(["toys", "books", "kitchen"], n),
            "material": rng.choice(["glass", "paper", "plastic"], n),
            "length_cm": rng.uniform(1, 50, n),
            "width_cm": rng.uniform(1, 50, n),
            "height_cm": rng.uniform(1, 50, n),
            "weight_kg": rng.uniform(0.1, 5, n),
            "fragility": rng.uniform(0, 1, n),
            "price": rng.uniform(1, 100, n),
            "is_liquid": rng.random(n) < 0.2,
            "has_battery": rng.random(n) < 0.1,
            "added_at": pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(n), unit="D"),
        }
    )


def make_labels(products: pd.DataFrame, types: list[str] = TYPES) -> pd.DataFrame:
    ids = products["product_id"].tolist()
    rows = [(pid, t, (i + j) % 2) for i, pid in enumerate(ids) for j, t in enumerate(types) if (i + j) % 5 != 0]
    return pd.DataFrame(rows, columns=["product_id", "package_type", "label"]).astype({"label": "int8"})


def write_snapshot(directory: Path, products: pd.DataFrame | pa.Table, labels: pd.DataFrame | pa.Table) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in (("products", products), ("labels", labels)):
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, directory / f"{name}.parquet")
    (directory / "manifest.json").write_text("{}")
    return directory


@pytest.fixture
def snapshot(tmp_path: Path) -> Callable[..., Path]:
    def build(products: pd.DataFrame | pa.Table | None = None, labels: pd.DataFrame | pa.Table | None = None) -> Path:
        p = make_products() if products is None else products
        lab = make_labels(make_products()) if labels is None else labels
        return write_snapshot(tmp_path / "snap", p, lab)

    return build


def check(snapshot_dir: Path, *fragments: str, features: FeatureConfig = FEATURES, text: bool = False) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_snapshot(snapshot_dir, features, TYPES, needs_text=text)
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


# --- the happy path -----------------------------------------------------------------------------------


def test_valid_snapshot_stats(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    labels = make_labels(products)
    extra = pd.DataFrame({"product_id": ["p0001", "p0002", "p0003"], "package_type": "crate", "label": 1})
    labels = pd.concat([labels, extra.astype({"label": "int8"})], ignore_index=True)
    stats = validate_snapshot(snapshot(products, labels), FEATURES, TYPES, needs_text=True)

    assert isinstance(stats, SnapshotStats)
    assert stats.n_products == 40
    assert stats.n_label_rows == len(labels) - 3
    assert stats.ignored_label_rows == {"crate": 3}
    assert stats.n_ignored_label_rows == 3
    assert list(stats.package_types) == TYPES
    for t in TYPES:
        sub = labels[labels["package_type"] == t]
        assert stats.package_types[t].n_labels == len(sub)
        assert stats.package_types[t].n_positive == int(sub["label"].sum())
        assert stats.package_types[t].positive_rate == pytest.approx(sub["label"].mean())
    payload = json.loads(json.dumps(stats.model_dump(mode="json")))
    assert payload["ignored_label_rows"] == {"crate": 3}
    assert payload["package_types"]["box"]["n_labels"] == stats.package_types["box"].n_labels


def test_accepts_01_integer_booleans_dictionary_strings_and_float_labels(
    snapshot: Callable[..., Path],
) -> None:
    products = make_products()
    products["is_liquid"] = products["is_liquid"].astype("int64")
    table = pa.Table.from_pandas(products, preserve_index=False)
    cat = table.column("category").dictionary_encode()
    table = table.set_column(table.schema.get_field_index("category"), "category", cat)
    labels = make_labels(products).astype({"label": "float64"})
    stats = validate_snapshot(snapshot(table, labels), FEATURES, TYPES, needs_text=False)
    assert stats.n_products == 40


def test_reads_only_needed_columns(snapshot: Callable[..., Path]) -> None:
    # An unneeded column of an odd type is not read, so it cannot fail validation.
    products = make_products()
    products["notes"] = [[1, 2]] * len(products)
    features = FeatureConfig(numeric=["price"], boolean=[], categorical=[], derived=[])
    validate_snapshot(snapshot(products), features, TYPES, needs_text=False)


# --- structure ----------------------------------------------------------------------------------------


def test_missing_feature_column(snapshot: Callable[..., Path]) -> None:
    msg = check(snapshot(make_products().drop(columns=["weight_kg"])), "'weight_kg'")
    assert msg == (
        "snapshot: feature column 'weight_kg' is missing from products; "
        "add it to warehouse.products_query or remove it from features.numeric"
    )


def test_missing_text_column_only_when_text_needed(snapshot: Callable[..., Path]) -> None:
    path = snapshot(make_products().drop(columns=["title"]))
    validate_snapshot(path, FEATURES, TYPES, needs_text=False)
    check(path, "'title'", "features.text", text=True)


def test_missing_column_needed_by_derived_feature(snapshot: Callable[..., Path]) -> None:
    features = FeatureConfig(numeric=["price"], derived=["volume_cm3"])  # named: it needs height_cm
    check(
        snapshot(make_products().drop(columns=["height_cm"])),
        "'height_cm'",
        "features.derived",
        features=features,
    )


def test_missing_product_id(snapshot: Callable[..., Path]) -> None:
    check(snapshot(make_products().drop(columns=["product_id"])), "'product_id'", "missing from products")


@pytest.mark.parametrize(
    ("column", "value", "found", "expected"),
    [
        ("weight_kg", "heavy", "string; expected", "expected integer or float"),
        ("is_liquid", "yes", "string; expected", "expected boolean (or 0/1 integers)"),
        ("is_liquid", 0.5, "type double", "expected boolean (or 0/1 integers)"),
        ("category", 3, "type int64", "expected string"),
        ("product_id", 7, "type int64", "expected string"),
    ],
)
def test_wrong_column_type(
    snapshot: Callable[..., Path], column: str, value: object, found: str, expected: str
) -> None:
    products = make_products()
    products[column] = [value] * len(products)
    check(snapshot(products), f"column {column!r}", found, expected, "warehouse.products_query")


def test_boolean_integers_other_than_01(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    products["has_battery"] = np.arange(len(products)) % 3
    check(snapshot(products), "'has_battery'", "other than 0/1", "e.g. 2")


@pytest.mark.parametrize("column", ["product_id", "package_type", "label"])
def test_missing_label_column(snapshot: Callable[..., Path], column: str) -> None:
    labels = make_labels(make_products()).drop(columns=[column])
    check(snapshot(labels=labels), f"column {column!r} is missing from labels", "warehouse.labels_query")


def test_label_column_of_wrong_type(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products()).astype({"label": str})
    check(snapshot(labels=labels), "column 'label' in labels has type ", "string; expected 0/1 integers")


def test_structure_errors_come_before_label_errors(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products())
    labels.loc[0, "label"] = 7
    check(snapshot(make_products().drop(columns=["price"]), labels), "'price'")


def test_missing_file(tmp_path: Path) -> None:
    check(tmp_path, "products.parquet does not exist")


def test_unreadable_file(snapshot: Callable[..., Path]) -> None:
    path = snapshot()
    (path / "labels.parquet").write_text("not parquet")
    check(path, "labels.parquet is not a readable parquet file")


# --- products data ------------------------------------------------------------------------------------


def test_duplicate_product_ids(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    products.loc[5, "product_id"] = "p0004"
    products.loc[7, "product_id"] = "p0004"
    check(snapshot(products), "2 duplicate product_id rows", "'p0004'", "one row per product")


def test_empty_products(snapshot: Callable[..., Path]) -> None:
    check(snapshot(make_products().iloc[:0]), "products has no rows")


def test_empty_labels(snapshot: Callable[..., Path]) -> None:
    check(snapshot(labels=make_labels(make_products()).iloc[:0]), "labels has no rows")


# --- labels data --------------------------------------------------------------------------------------


def test_null_and_unknown_label_values(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products()).astype({"label": "float64"})
    labels.loc[3, "label"] = np.nan
    labels.loc[10, "label"] = 2
    labels.loc[11, "label"] = -1
    pid = labels.loc[3, "product_id"]
    check(snapshot(labels=labels), "3 rows with a null or non-0/1 label", f"product {pid!r}")


def test_bad_label_in_unconfigured_type_is_ignored(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products())
    extra = pd.DataFrame({"product_id": ["p0001"], "package_type": ["crate"], "label": [9]})
    stats = validate_snapshot(
        snapshot(labels=pd.concat([labels, extra], ignore_index=True)), FEATURES, TYPES, needs_text=False
    )
    assert stats.ignored_label_rows == {"crate": 1}


def test_duplicate_label_pairs(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products())
    labels = pd.concat([labels, labels.iloc[[4, 4]]], ignore_index=True)
    row = labels.iloc[4]
    check(
        snapshot(labels=labels),
        "2 duplicate (product_id, package_type) rows",
        repr(row["product_id"]),
        repr(row["package_type"]),
    )


def test_labels_of_unknown_products(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products())
    labels.loc[0, "product_id"] = "ghost"
    labels.loc[1, "product_id"] = "ghost2"
    check(snapshot(labels=labels), "2 labels reference products missing", "'ghost'")


def test_configured_type_without_labels(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products())
    labels = labels[labels["package_type"] != "mailer"]
    check(snapshot(labels=labels), "'mailer' has no labels", "remove it from package_types")


def test_no_configured_type_has_labels(snapshot: Callable[..., Path]) -> None:
    labels = make_labels(make_products(), types=["crate"])
    check(snapshot(labels=labels), "no rows for any configured package type", "crate")


@pytest.mark.parametrize(("value", "only"), [(1, "only positive (1)"), (0, "only negative (0)")])
def test_single_class_type(snapshot: Callable[..., Path], value: int, only: str) -> None:
    labels = make_labels(make_products())
    labels.loc[labels["package_type"] == "bag", "label"] = value
    check(snapshot(labels=labels), f"'bag' has {only} labels")


# --- inference frames ---------------------------------------------------------------------------------


def test_products_frame_valid_with_python_strings_and_nulls() -> None:
    products = make_products().astype({"category": object})
    products.loc[0, "category"] = None
    products.loc[1, "weight_kg"] = np.nan
    validate_products_frame(products, FEATURES, needs_text=True)


def test_products_frame_empty_passes() -> None:
    validate_products_frame(make_products().iloc[:0], FEATURES, needs_text=False)


def test_products_frame_missing_column() -> None:
    with pytest.raises(DataValidationError, match=r"inventory: feature column 'material' is missing"):
        validate_products_frame(make_products().drop(columns=["material"]), FEATURES, needs_text=False)


@pytest.mark.parametrize(
    ("column", "values", "found"),
    [
        ("price", ["1.0"] * 40, "type str"),
        ("material", list(range(40)), "type int64"),
        ("is_liquid", np.linspace(0, 1, 40), "type float64"),
    ],
)
def test_products_frame_wrong_type(column: str, values: object, found: str) -> None:
    products = make_products()
    products[column] = values
    with pytest.raises(DataValidationError, match=rf"column '{column}' in products has {found}; expected"):
        validate_products_frame(products, FEATURES, needs_text=False)


def test_products_frame_duplicate_ids_and_custom_source() -> None:
    products = make_products()
    products.loc[3, "product_id"] = "p0000"
    with pytest.raises(DataValidationError, match=r"^new products: products has 1 duplicate .*'p0000'"):
        validate_products_frame(products, FEATURES, needs_text=False, source="new products")


def test_products_frame_null_id() -> None:
    products = make_products()
    products.loc[3, "product_id"] = None
    with pytest.raises(DataValidationError, match="1 products have a null product_id"):
        validate_products_frame(products, FEATURES, needs_text=False)


# --- values: negative, infinite, suspicious; unknown package types (issue 12) --------------------------


def test_negative_dimensions_name_the_column_and_the_count(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    products.loc[:2, "height_cm"] = -1.0
    check(snapshot(products), "column 'height_cm' in products has 3 negative values", "warehouse.products_query")


def test_negative_weights_are_refused(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    products.loc[5, "weight_kg"] = -0.5
    check(snapshot(products), "column 'weight_kg' in products has 1 negative values")


def test_infinite_values_are_refused_before_training(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    products.loc[[1, 7], "length_cm"] = np.inf
    products.loc[3, "price"] = -np.inf
    msg = check(snapshot(products), "infinite values", "finite numbers or null")
    assert "'length_cm' in products has 2 infinite values" in msg


def test_extreme_but_finite_values_are_a_counted_warning(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    products.loc[:3, "length_cm"] = 5_000.0  # 50 m
    stats = validate_snapshot(snapshot(products), FEATURES, TYPES, needs_text=False)
    assert stats.suspicious_rows == {"length_cm": 4}
    assert stats.warnings == ["column 'length_cm' has 4 rows above 1000 (implausible; check the source data)"]
    assert stats.model_dump(mode="json")["warnings"] == stats.warnings


def test_labels_of_unknown_package_types_are_reported(snapshot: Callable[..., Path]) -> None:
    products = make_products()
    extra = pd.DataFrame(
        {"product_id": ["p0001", "p0002", "p0003"], "package_type": ["crate", "crate", "pallet"], "label": 1}
    )
    labels = pd.concat([make_labels(products), extra.astype({"label": "int8"})], ignore_index=True)
    stats = validate_snapshot(snapshot(products, labels), FEATURES, TYPES, needs_text=False)
    assert stats.warnings == [
        "3 label rows of package types not in package_types were ignored (crate: 2, pallet: 1); "
        "add them to package_types or filter them out in warehouse.labels_query"
    ]


def test_the_inventory_frame_counts_bad_values_for_its_caller() -> None:
    products = make_products()
    products.loc[0, "width_cm"] = np.inf
    products.loc[1:2, "weight_kg"] = -1.0
    products.loc[3, "weight_kg"] = 2_000.0
    counts = validate_products_frame(products, FEATURES, needs_text=False)
    assert counts == {"infinite": {"width_cm": 1}, "negative": {"weight_kg": 2}, "suspicious": {"weight_kg": 1}}
