"""Checks that a label snapshot (or an inventory frame) is fit for training (or scoring).

A label snapshot is a directory with ``products.parquet`` (one row per product) and ``labels.parquet``
(one row per product and package type, ``label`` 0 or 1). The checks run structure first (files,
columns, types), then the data (duplicates, label values, coverage), so the first error raised is the
most fundamental one. Every error is a `DataValidationError` whose one line names the problem and the
key or query that fixes it.

Nulls in feature columns are allowed: the models treat them as missing values. Infinite values in a
numeric column, and negative dimensions or weights, are errors; finite but implausible dimensions or
weights (`SUSPICIOUS_ABOVE`) are counted and reported as warnings, as are label rows of package types
that are not configured. The per-column checks live in `packwise.column_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, computed_field, model_serializer

from packwise.column_checks import (
    LABEL_KINDS,
    PRODUCT_ID,
    PRODUCTS_QUERY_KEY,
    STRING_KINDS,
    SUSPICIOUS_ABOVE,
    arrow_kind,
    check_boolean_values,
    check_columns,
    check_product_ids,
    check_sorted_product_ids,
    count_bad_values,
    expected_text,
    feature_groups,
    merge_counts,
    numeric_columns,
    pandas_kind,
    raise_on_bad_values,
    show_value,
    suspicious_warnings,
)
from packwise.config import FeatureConfig
from packwise.errors import DataValidationError

PRODUCTS_FILE = "products.parquet"
LABELS_FILE = "labels.parquet"
LABEL_COLUMNS = ("product_id", "package_type", "label")

LABELS_QUERY_KEY = "warehouse.labels_query"


class LabelStats(BaseModel):
    """Label counts of one package type (in a snapshot or in one split).

    Attributes:
        n_labels: Products with a label for the package type.
        n_positive: Of those, products labelled 1 (suitable).
        positive_rate: n_positive / n_labels, 0.0 when there are no labels.
    """

    model_config = ConfigDict(frozen=True)

    n_labels: int
    n_positive: int
    positive_rate: float

    @classmethod
    def from_labels(cls, labels: pd.Series) -> LabelStats:
        """Counts a series of non-null 0/1 labels."""
        n = len(labels)
        n_pos = int((labels == 1).sum())
        return cls(n_labels=n, n_positive=n_pos, positive_rate=n_pos / n if n else 0.0)


class SnapshotStats(BaseModel):
    """What a valid snapshot holds.

    Attributes:
        n_products: Rows of products.parquet.
        n_labelled_products: Products with a label for at least one configured package type.
        n_label_rows: Label rows of configured package types.
        package_types: Label statistics per configured package type, in configuration order.
        ignored_label_rows: Label rows per package type that is not configured (ignored, not an error).
    """

    model_config = ConfigDict(frozen=True)

    n_products: int
    n_labelled_products: int
    n_label_rows: int
    package_types: dict[str, LabelStats]
    ignored_label_rows: dict[str, int] = Field(default_factory=dict)
    suspicious_rows: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_ignored_label_rows(self) -> int:
        return sum(self.ignored_label_rows.values())

    @model_serializer(mode="wrap")
    def _wire_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The component output's key order, as before the model: the total before its breakdown.
        data: dict[str, Any] = handler(self)
        ignored = data.pop("ignored_label_rows")
        tail = {k: data.pop(k) for k in ("suspicious_rows", "warnings")}
        return {**data, "ignored_label_rows": ignored, **tail}


def validate_products_frame(
    df: pd.DataFrame,
    features: FeatureConfig,
    needs_text: bool,
    *,
    source: str = "inventory",
    query_key: str = PRODUCTS_QUERY_KEY,
    check_ids: bool = True,
    kinds_of: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, dict[str, int]]:
    """Checks product rows before features are built from them (the inference path).

    Same checks as the products half of `validate_snapshot`: every feature column present with a usable
    type, boolean columns stored as 0/1 integers hold only 0/1, product ids present and unique. An empty
    frame passes: whether there is anything to score is the caller's decision. Infinite values and
    negative dimensions or weights are counted, not raised: the caller raises (`raise_on_bad_values`)
    once it has counted every batch.

    Args:
        df: One row per product.
        features: The feature specification.
        needs_text: Whether the model type reads the text column (`features.text`).
        source: Prefix of error messages.
        query_key: Configuration key of the query that produced the rows, named in fixes.
        check_ids: Check product ids here; False when the caller does (`check_sorted_product_ids`).
        kinds_of: (kind, type name) of columns the caller left out of `df` and typed itself (`pandas_kind`).

    Returns:
        Bad-value counts of the frame (`count_bad_values`).

    Raises:
        DataValidationError: On the first problem found.
    """
    groups = feature_groups(features, needs_text)
    kinds = {col: (pandas_kind(df[col]), str(df[col].dtype)) for col in groups if col in df.columns}
    check_columns(source, {**(kinds_of or {}), **kinds}, groups, query_key)
    check_boolean_values(source, df, features.boolean, query_key)
    if check_ids:
        check_product_ids(source, df[PRODUCT_ID], query_key)
    return count_bad_values(df, numeric_columns(df, groups))


def validate_labels_frame(
    labels: pd.DataFrame,
    product_ids: pd.Series,
    package_types: Sequence[str],
    *,
    source: str = "snapshot",
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Checks label rows against the products and the configured package types.

    Rows of package types that are not configured are dropped and counted, never an error.

    Args:
        labels: Columns product_id, package_type, label.
        product_ids: The (unique) product ids of the snapshot.
        package_types: Configured package type names.
        source: Prefix of error messages.

    Returns:
        The rows of configured package types with ``label`` cast to int8, and the number of ignored
        rows per unconfigured package type.

    Raises:
        DataValidationError: On the first problem found.
    """
    if labels.empty:
        raise DataValidationError(f"{source}: labels has no rows; check {LABELS_QUERY_KEY} and the snapshot week")
    for col in ("product_id", "package_type"):
        n_null = int(labels[col].isna().sum())
        if n_null:
            raise DataValidationError(
                f"{source}: labels has {n_null} rows with a null {col}; filter them out in {LABELS_QUERY_KEY}"
            )
    configured = labels["package_type"].isin(list(package_types))
    ignored_counts = labels.loc[~configured, "package_type"].astype(str).value_counts()
    ignored = {str(k): int(v) for k, v in sorted(ignored_counts.items())}
    kept = labels.loc[configured]
    if kept.empty:
        found = ", ".join(sorted(ignored)) or "none"
        raise DataValidationError(
            f"{source}: labels has no rows for any configured package type (found: {found}); "
            f"fix package_types or {LABELS_QUERY_KEY}"
        )

    values = kept["label"]
    bad = kept.loc[values.isna() | ~values.isin([0, 1])]
    if len(bad):
        row = bad.iloc[0]
        raise DataValidationError(
            f"{source}: labels has {len(bad)} rows with a null or non-0/1 label "
            f"(e.g. product {row['product_id']!r}, {row['package_type']}: {show_value(row['label'])}); "
            f"make {LABELS_QUERY_KEY} return only 0 or 1"
        )

    dup = kept.loc[kept.duplicated(["product_id", "package_type"])]
    if len(dup):
        row = dup.iloc[0]
        raise DataValidationError(
            f"{source}: labels has {len(dup)} duplicate (product_id, package_type) rows "
            f"(e.g. {row['product_id']!r}, {row['package_type']!r}); "
            f"make {LABELS_QUERY_KEY} return one label per product and package type"
        )

    orphans = kept.loc[~kept["product_id"].isin(product_ids)]
    if len(orphans):
        raise DataValidationError(
            f"{source}: {len(orphans)} labels reference products missing from products "
            f"(e.g. {orphans['product_id'].iloc[0]!r}); "
            f"make {PRODUCTS_QUERY_KEY} select every labelled product"
        )

    kept = kept.assign(label=kept["label"].astype("int8"))
    counts = kept.groupby("package_type")["label"].agg(["size", "sum"])
    for name in package_types:
        if name not in counts.index:
            raise DataValidationError(
                f"{source}: package type {name!r} has no labels; add labels or remove it from package_types"
            )
        n, n_pos = int(counts.loc[name, "size"]), int(counts.loc[name, "sum"])
        if n_pos in (0, n):
            only = "positive (1)" if n_pos else "negative (0)"
            missing = "negative" if n_pos else "positive"
            raise DataValidationError(
                f"{source}: package type {name!r} has only {only} labels ({n} rows); "
                f"add {missing} labels or remove it from package_types"
            )
    return kept.reset_index(drop=True), ignored


def _schema_kinds(path: Path, source: str) -> dict[str, tuple[str, str]]:
    if not path.is_file():
        raise DataValidationError(f"{source}: {path} does not exist; re-run the extract step for this snapshot")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataValidationError(
            f"{source}: {path} is not a readable parquet file ({first}); re-run the extract step"
        ) from None
    return {name: (arrow_kind(schema.field(name).type), str(schema.field(name).type)) for name in schema.names}


def validate_snapshot(
    snapshot_dir: Path, features: FeatureConfig, package_types: list[str], needs_text: bool
) -> SnapshotStats:
    """Checks that a label snapshot can be split and trained on.

    Reads only the columns it checks. Order: files, product columns and types, label columns and types,
    product ids, label rows (empty, values, duplicates, unknown products, coverage per package type).

    Args:
        snapshot_dir: Directory holding products.parquet and labels.parquet.
        features: The feature specification; its input columns must be in products.
        package_types: Configured package type names; label rows of other types are ignored.
        needs_text: Whether the model type reads the text column (`features.text`).

    Returns:
        Counts of products and labels per package type.

    Raises:
        DataValidationError: On the first problem found, naming it and its fix.
    """
    source = "snapshot"
    products_path = snapshot_dir / PRODUCTS_FILE
    labels_path = snapshot_dir / LABELS_FILE

    groups = feature_groups(features, needs_text)
    product_kinds = _schema_kinds(products_path, source)
    check_columns(source, product_kinds, groups, PRODUCTS_QUERY_KEY)

    label_kinds = _schema_kinds(labels_path, source)
    for col in LABEL_COLUMNS:
        if col not in label_kinds:
            raise DataValidationError(f"{source}: column {col!r} is missing from labels; add it to {LABELS_QUERY_KEY}")
    label_expect = {"product_id": STRING_KINDS, "package_type": STRING_KINDS, "label": LABEL_KINDS}
    for col, kinds in label_expect.items():
        kind, type_name = label_kinds[col]
        if kind != "null" and kind not in kinds:
            raise DataValidationError(
                f"{source}: column {col!r} in labels has type {type_name}; expected {expected_text(kinds)}; "
                f"cast it in {LABELS_QUERY_KEY}"
            )

    products = pq.read_table(products_path, columns=list(groups)).to_pandas()
    if products.empty:
        raise DataValidationError(f"{source}: products has no rows; check {PRODUCTS_QUERY_KEY} and the snapshot week")
    check_boolean_values(source, products, features.boolean, PRODUCTS_QUERY_KEY)
    check_product_ids(source, products[PRODUCT_ID], PRODUCTS_QUERY_KEY)
    value_counts = count_bad_values(products, numeric_columns(products, groups))
    raise_on_bad_values(source, value_counts, PRODUCTS_QUERY_KEY)

    labels = pq.read_table(labels_path, columns=list(LABEL_COLUMNS)).to_pandas()
    kept, ignored = validate_labels_frame(labels, products[PRODUCT_ID], package_types, source=source)

    per_type = {name: LabelStats.from_labels(kept.loc[kept["package_type"] == name, "label"]) for name in package_types}
    warnings = suspicious_warnings(value_counts)
    if ignored:
        listed = ", ".join(f"{name}: {n}" for name, n in ignored.items())
        warnings.append(
            f"{sum(ignored.values())} label rows of package types not in package_types were ignored ({listed}); "
            f"add them to package_types or filter them out in {LABELS_QUERY_KEY}"
        )
    return SnapshotStats(
        n_products=len(products),
        n_labelled_products=int(kept["product_id"].nunique()),
        n_label_rows=len(kept),
        package_types=per_type,
        ignored_label_rows=ignored,
        suspicious_rows=dict(sorted(value_counts["suspicious"].items())),
        warnings=warnings,
    )


__all__ = [  # the column checks are re-exported: callers validate through this module
    "LABELS_FILE",
    "LABELS_QUERY_KEY",
    "LABEL_COLUMNS",
    "PRODUCTS_FILE",
    "PRODUCTS_QUERY_KEY",
    "PRODUCT_ID",
    "SUSPICIOUS_ABOVE",
    "LabelStats",
    "SnapshotStats",
    "check_product_ids",
    "check_sorted_product_ids",
    "count_bad_values",
    "merge_counts",
    "raise_on_bad_values",
    "suspicious_warnings",
    "validate_labels_frame",
    "validate_products_frame",
    "validate_snapshot",
]
