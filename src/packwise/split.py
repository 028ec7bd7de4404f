"""Splits a label snapshot into training and validation products.

The split is by product: every product lands in exactly one split with all its labels, so no model is
validated on a product it was trained on under another package type.

A product's side depends only on its id, the ratio and the seed (a seeded hash), never on row order or
on its labels, so it stays on the same side week after week as labels grow: the champion is never scored
on its own training products. Uniform hashing spreads every label pattern (0, 1 or missing per type)
proportionally over both sides; the summary reports the per-type positive rates of both splits and the
split fails if any type lacks a class on either side. (A rank-within-label-pattern stratification was
tried first: it is exact for one snapshot but moves products across the boundary when their labels
change, which biased the gate towards the champion by 0.005-0.02 AUC.)

Each output file has one row per product: every product column plus one nullable int8 column
``label__<package_type>`` per configured type (null when the product has no label for that type).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from packwise.errors import ConfigError, DataValidationError
from packwise.files import atomic_write
from packwise.validation import (
    LABEL_COLUMNS,
    LABELS_FILE,
    PRODUCT_ID,
    PRODUCTS_FILE,
    LabelStats,
    check_product_ids,
    validate_labels_frame,
)

LABEL_PREFIX = "label__"
MIN_STRATUM_SIZE = 10
_POOLED = "*"


def label_column(package_type: str) -> str:
    """Name of the label column of a package type in a split file."""
    return f"{LABEL_PREFIX}{package_type}"


class SplitSummary(BaseModel):
    """What the split produced.

    Attributes:
        n_train: Products in the training split.
        n_validation: Products in the validation split.
        train_ratio: The requested share of products in training.
        seed: Seed of the split.
        n_strata: Strata the products were split in (the pooled one included).
        n_pooled: Products whose label pattern was too rare for its own stratum.
        train: Label statistics per package type in the training split.
        validation: Label statistics per package type in the validation split.
    """

    model_config = ConfigDict(frozen=True)

    n_train: int
    n_validation: int
    train_ratio: float
    seed: int
    n_strata: int
    n_pooled: int
    train: dict[str, LabelStats]
    validation: dict[str, LabelStats]

    @model_serializer(mode="wrap")
    def _by_package_type(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The component output groups both sides under each package type.
        data: dict[str, Any] = handler(self)
        train, validation = data.pop("train"), data.pop("validation")
        data["package_types"] = {name: {"train": train[name], "validation": validation[name]} for name in train}
        return data


def _hash_order(product_ids: pd.Series, seed: int) -> np.ndarray:
    """A seeded pseudo-random key per product id, stable across platforms and row orders."""
    key = hashlib.sha256(f"packwise-split:{seed}".encode()).hexdigest()[:16]
    hashed = pd.util.hash_pandas_object(product_ids.astype(str), index=False, hash_key=key)
    return hashed.to_numpy(dtype=np.uint64)


def _label_patterns(wide: pd.DataFrame, package_types: Sequence[str]) -> pd.Series:
    """Per product, its labels across the types as a string: '0', '1' or '-' (missing) per type."""
    parts = [wide[label_column(name)].map({0: "0", 1: "1"}).fillna("-").astype(str) for name in package_types]
    pattern = parts[0]
    for part in parts[1:]:
        pattern = pattern + part
    return pattern


def _assign_train(
    wide: pd.DataFrame, package_types: Sequence[str], train_ratio: float, seed: int
) -> tuple[np.ndarray, int, int]:
    """Boolean train mask over `wide`, the number of label-pattern strata and of products in rare ones.

    A product's side depends only on its id, the seed and the ratio (a seeded hash below the ratio goes
    to training), never on the other products or on its labels. Labels grow every week and a product's
    label pattern changes with them; a rank-within-stratum split would move products across the
    boundary week over week, so the champion would be scored on products it was trained on and the gate
    would favour it. With a stable side, last week's training products are never this week's validation.
    Balance across label patterns comes from the hash being uniform; `split_snapshot` then checks that
    every type has both classes on both sides.
    """
    patterns = _label_patterns(wide, package_types)
    min_size = max(MIN_STRATUM_SIZE, math.ceil(2 / min(train_ratio, 1 - train_ratio)))
    sizes = patterns.value_counts()
    n_pooled = int(patterns.isin(sizes.index[sizes < min_size]).sum())
    unit = _hash_order(wide[PRODUCT_ID], seed).astype(np.float64) / float(2**64)
    train = unit < train_ratio
    return train, int(sizes.size), n_pooled


def _read_inputs(snapshot_dir: Path, package_types: Sequence[str]) -> tuple[pa.Table, pd.DataFrame]:
    source = "split"
    products_path = snapshot_dir / PRODUCTS_FILE
    labels_path = snapshot_dir / LABELS_FILE
    for path in (products_path, labels_path):
        if not path.is_file():
            raise DataValidationError(f"{source}: {path} does not exist; re-run the extract step for this snapshot")
    products = pq.read_table(products_path)
    if PRODUCT_ID not in products.column_names:
        raise DataValidationError(
            f"{source}: column 'product_id' is missing from products; add it to warehouse.products_query"
        )
    clash = [label_column(n) for n in package_types if label_column(n) in products.column_names]
    if clash:
        raise DataValidationError(
            f"{source}: products already has a column {clash[0]!r}; rename it in warehouse.products_query"
        )
    ids = products.column(PRODUCT_ID).to_pandas()
    check_product_ids(source, ids)
    labels_schema = pq.read_schema(labels_path)
    missing = [c for c in LABEL_COLUMNS if c not in labels_schema.names]
    if missing:
        raise DataValidationError(
            f"{source}: column {missing[0]!r} is missing from labels; add it to warehouse.labels_query"
        )
    labels = pq.read_table(labels_path, columns=list(LABEL_COLUMNS)).to_pandas()
    kept, _ = validate_labels_frame(labels, ids, package_types, source=source)
    return products, kept


def _split_stats(wide: pd.DataFrame, package_types: Sequence[str]) -> dict[str, LabelStats]:
    return {name: LabelStats.from_labels(wide[label_column(name)].dropna()) for name in package_types}


def _write_atomically(tables: dict[Path, pa.Table]) -> None:
    """Writes every table to a temporary sibling, then renames them all into place (none if one fails)."""
    with contextlib.ExitStack() as stack:
        for path, table in tables.items():
            pq.write_table(table, stack.enter_context(atomic_write(path)))


def split_snapshot(
    snapshot_dir: Path,
    train_path: Path,
    validation_path: Path,
    train_ratio: float,
    seed: int,
    package_types: list[str],
) -> SplitSummary:
    """Splits the labelled products of a snapshot into training and validation parquet files.

    Only products with at least one label of a configured package type are written. Nothing is written
    unless both splits hold both classes of every package type.

    Args:
        snapshot_dir: Directory holding products.parquet and labels.parquet (validated beforehand).
        train_path: Where the training split is written.
        validation_path: Where the validation split is written.
        train_ratio: Share of products in training, strictly between 0 and 1.
        seed: Seed of the split; the same data, ratio and seed give the same split.
        package_types: Configured package type names; labels of other types are ignored.

    Returns:
        Product counts and per package type label statistics of both splits.

    Raises:
        ConfigError: `train_ratio` is not strictly between 0 and 1.
        DataValidationError: The snapshot is unusable, or a split would lack a class of a package type.
    """
    if not 0.0 < train_ratio < 1.0:
        raise ConfigError(f"split.train_ratio must be strictly between 0 and 1, got {train_ratio}; e.g. 0.8")
    if not package_types:
        raise ConfigError("package_types is empty; configure at least one package type")
    if Path(train_path).resolve() == Path(validation_path).resolve():
        raise ValueError("train_path and validation_path must differ")

    products, labels = _read_inputs(snapshot_dir, package_types)

    wide = labels.pivot(index="product_id", columns="package_type", values="label")
    wide = wide.reindex(columns=list(package_types))
    wide.columns = [label_column(name) for name in package_types]
    wide = wide.astype("Int8").sort_index().rename_axis(PRODUCT_ID).reset_index()

    train_mask, n_strata, n_pooled = _assign_train(wide, package_types, train_ratio, seed)
    train_wide, val_wide = wide.loc[train_mask], wide.loc[~train_mask]
    train_stats = _split_stats(train_wide, package_types)
    val_stats = _split_stats(val_wide, package_types)

    for split_name, stats, direction in (
        ("training", train_stats, "raise"),
        ("validation", val_stats, "lower"),
    ):
        for name, s in stats.items():
            if s.n_positive == 0 or s.n_positive == s.n_labels:
                missing = "positive" if s.n_positive == 0 else "negative"
                raise DataValidationError(
                    f"split: package type {name!r} has no {missing} labels in the {split_name} split "
                    f"({s.n_labels} labels); {direction} split.train_ratio or add {missing} labels"
                )

    all_ids = pc.cast(products.column(PRODUCT_ID).combine_chunks(), pa.large_string())
    out: dict[Path, pa.Table] = {}
    for path, part in ((train_path, train_wide), (validation_path, val_wide)):
        rows = pc.index_in(pa.array(part[PRODUCT_ID].to_numpy(dtype=object), type=pa.large_string()), all_ids)
        table = products.take(rows)
        for name in package_types:
            col = label_column(name)
            table = table.append_column(col, pa.array(part[col], type=pa.int8(), from_pandas=True))
        out[Path(path)] = table
    _write_atomically(out)

    return SplitSummary(
        n_train=len(train_wide),
        n_validation=len(val_wide),
        train_ratio=train_ratio,
        seed=seed,
        n_strata=n_strata,
        n_pooled=n_pooled,
        train=train_stats,
        validation=val_stats,
    )


def read_split(path: Path, package_type: str, columns: Sequence[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The products of a split file that have a label for one package type, and those labels.

    The returned frame holds the product columns only (no ``label__*`` column), so a feature builder
    cannot read a label by accident.

    Args:
        path: A file written by `split_snapshot`.
        package_type: The package type whose labelled products are wanted.
        columns: Product columns to read (all when None); reading only the features skips e.g. titles.

    Returns:
        The product rows (fresh RangeIndex) and their labels as an int8 array, in the same order.

    Raises:
        DataValidationError: The file has no label column for the package type.
    """
    col = label_column(package_type)
    names = pq.read_schema(path).names
    if col not in names:
        have = sorted(c.removeprefix(LABEL_PREFIX) for c in names if c.startswith(LABEL_PREFIX))
        raise DataValidationError(
            f"split: {path} has no labels for package type {package_type!r} "
            f"(has: {', '.join(have) or 'none'}); "
            "re-run the split with it in package_types"
        )
    wanted = None if columns is None else [c for c in dict.fromkeys([PRODUCT_ID, *columns, col]) if c in names]
    table = pq.read_table(path, columns=wanted)
    table = table.filter(pc.is_valid(table.column(col)))
    labels = table.column(col).to_numpy().astype(np.int8, copy=False)
    drop = [c for c in table.column_names if c.startswith(LABEL_PREFIX)]
    return table.drop_columns(drop).to_pandas(), labels
