"""Feature rows as the CSV SageMaker's built-in XGBoost container reads: no header, numbers only.

Training files carry the label first; scoring files carry the product id first (the transform job drops it
with ``InputFilter`` and joins it back with ``JoinSource``). Values are written in the shortest form that
reads back as the same float32, and a missing value is an empty field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from packwise.errors import DataValidationError
from packwise.features import FeatureRows

_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")


def _columns(rows: FeatureRows) -> list[pa.Array]:
    if rows.text is not None:
        raise DataValidationError(
            "SageMaker's CSV channels take dense tabular features; model types with text features train and "
            "score locally (set compute.* to local for them)"
        )
    return [pa.array(rows.dense[:, j], from_pandas=True) for j in range(rows.dense.shape[1])]


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pacsv.write_csv(table, path, _OPTIONS)
    except pa.ArrowInvalid as err:
        raise DataValidationError(
            f"a product id contains a comma, quote or line break and cannot travel in CSV ({err}); "
            "clean the ids in the products query"
        ) from None


def write_training_csv(rows: FeatureRows, labels: np.ndarray, path: Path) -> int:
    """``label,f1,f2,...`` per product; returns the row count."""
    names = ["label", *(f"f{j}" for j in range(rows.dense.shape[1]))]
    table = pa.Table.from_arrays([pa.array(np.asarray(labels, dtype=np.int8)), *_columns(rows)], names=names)
    _write(table, path)
    return table.num_rows


def write_scoring_csv(product_ids: np.ndarray, rows: FeatureRows, path: Path) -> int:
    """``product_id,f1,f2,...`` per product; returns the row count."""
    names = ["product_id", *(f"f{j}" for j in range(rows.dense.shape[1]))]
    ids = pa.array([str(i) for i in product_ids], type=pa.string())
    table = pa.Table.from_arrays([ids, *_columns(rows)], names=names)
    _write(table, path)
    return table.num_rows


def row_ranges(n_rows: int, rows_per_file: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` of each file when ``n_rows`` rows are split into files of ``rows_per_file``."""
    for start in range(0, max(n_rows, 1), rows_per_file):
        yield start, min(start + rows_per_file, n_rows)
