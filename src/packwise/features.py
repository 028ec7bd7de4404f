"""Feature rows from product attributes: the one function training and serving both call.

A `FeatureSpec` is fitted on the training split (the categorical vocabularies) and travels inside the
model file, so scoring rebuilds exactly the columns the model was trained on. Categorical values are
one-hot encoded against that vocabulary: a value never seen in training becomes all zeros (and is
counted), never an error. Every column is numeric, so the same rows can be sent as CSV to SageMaker's
built-in XGBoost container.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeAlias

import numpy as np
import pandas as pd

from packwise.config import FeatureConfig
from packwise.errors import DataValidationError, PackwiseError

if TYPE_CHECKING:
    import pyarrow as pa
    import scipy.sparse as sp

    # What `build_features` reads: a pandas frame, or an Arrow batch/table straight from a parquet reader
    # (no pandas copy; categorical columns may be dictionary-encoded).
    Products: TypeAlias = pd.DataFrame | pa.RecordBatch | pa.Table

_DIMS = ("length_cm", "width_cm", "height_cm")
# Rows per block of `build_features`' fill: 4096 rows of a few dozen float32 columns is well inside L2.
_FILL_ROWS = 4096


class StackedColumns(Protocol):
    """Dense columns computed by a model fitted at training time (e.g. a text model's logit).

    Too large for the recipe's JSON, it is saved beside the booster in model.tar.gz (see
    `packwise.artifact`); the recipe records its column names and the digest of its saved bytes.
    """

    @property
    def kind(self) -> str:
        """Which loader reads `to_bytes` back (see `packwise.models.load_stacked_columns`)."""
        ...

    @property
    def names(self) -> tuple[str, ...]:
        """The columns it adds, after the recipe's other dense columns."""
        ...

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The product text columns it reads (validated as strings)."""
        ...

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of `to_bytes()`."""
        ...

    def transform(self, products: pd.DataFrame) -> np.ndarray:
        """The columns for `products`: float32, shape (rows, len(names))."""
        ...

    def to_bytes(self) -> bytes:
        """The portable, reproducible serialisation `digest` is the SHA-256 of."""
        ...


@dataclass(frozen=True)
class StackedReference:
    """What a recipe's JSON alone knows of its stacked columns: enough to plan, not to compute them."""

    kind: str
    names: tuple[str, ...]
    input_columns: tuple[str, ...]
    digest: str

    def transform(self, products: pd.DataFrame) -> np.ndarray:
        self._unavailable()

    def to_bytes(self) -> bytes:
        self._unavailable()

    def _unavailable(self) -> NoReturn:
        raise PackwiseError(
            f"feature recipe: its {self.kind} model is saved in the model file, not the recipe; "
            "load the model with packwise.artifact.load_model_artifact"
        )


@dataclass(frozen=True)
class FeatureSpec:
    """The exact recipe of a model's input columns.

    A dataclass with a hand-written JSON form, not a pydantic model: `stacked` holds a fitted model object
    (saved beside the booster), which only a reference in the JSON stands for.
    """

    numeric: tuple[str, ...]
    boolean: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    derived: tuple[str, ...]
    text_column: str | None = None
    text_hash_features: int = 0
    stacked: StackedColumns | None = None

    @property
    def dense_names(self) -> list[str]:
        names = [*self.numeric, *self.boolean, *self.derived]
        for col, vocab in self.categorical.items():
            names += [f"{col}={v}" for v in vocab]
        if self.stacked is not None:
            names += self.stacked.names
        return names

    @property
    def names(self) -> list[str]:
        text = [f"{self.text_column}#{i}" for i in range(self.text_hash_features)] if self.text_column else []
        return [*self.dense_names, *text]

    @property
    def text_columns(self) -> list[str]:
        """The text columns it reads: the hashed one, and the stacked model's."""
        cols = [self.text_column] if self.text_column else []
        if self.stacked is not None:
            cols += [c for c in self.stacked.input_columns if c not in cols]
        return cols

    @property
    def input_columns(self) -> list[str]:
        cols = [*self.numeric, *self.boolean, *self.categorical]
        if self.derived:
            cols += [c for c in _DIMS if c not in cols]
        if "density_kg_per_l" in self.derived and "weight_kg" not in cols:
            cols.append("weight_kg")
        if self.text_column:
            cols.append(self.text_column)
        if self.stacked is not None:
            cols += [c for c in self.stacked.input_columns if c not in cols]
        return cols

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "numeric": list(self.numeric),
            "boolean": list(self.boolean),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "derived": list(self.derived),
            "text_column": self.text_column,
            "text_hash_features": self.text_hash_features,
        }
        if self.stacked is not None:  # absent otherwise: recipes without one keep their exact bytes
            d["stacked"] = stacked_reference(self.stacked)
        return json.dumps(d, sort_keys=True)

    @staticmethod
    def stacked_of(text: str) -> dict[str, Any] | None:
        """The stacked-columns reference (kind, names, sha256) a recipe's JSON records, if any."""
        ref: dict[str, Any] | None = json.loads(text).get("stacked")
        return ref

    @classmethod
    def from_json(cls, text: str, stacked: StackedColumns | None = None) -> FeatureSpec:
        """The recipe.

        Args:
            text: What `to_json` wrote.
            stacked: The stacked columns model the JSON references (from the model file). Without it, a
                recipe that references one gets a `StackedReference`: its columns are known, not computable.
        """
        d: dict[str, Any] = json.loads(text)
        ref = d.get("stacked")
        if ref is not None and stacked is None:
            stacked = StackedReference(
                kind=str(ref["kind"]),
                names=tuple(ref["names"]),
                input_columns=tuple(ref["inputs"]),
                digest=str(ref["sha256"]),
            )
        if ref is not None and stacked is not None and stacked_reference(stacked) != ref:
            raise DataValidationError(
                f"feature recipe: needs the stacked columns model {ref.get('kind')} with sha256 "
                f"{ref.get('sha256')}, which the model file does not hold; re-run training"
            )
        return cls(
            numeric=tuple(d["numeric"]),
            boolean=tuple(d["boolean"]),
            categorical={k: tuple(v) for k, v in d["categorical"].items()},
            derived=tuple(d["derived"]),
            text_column=d.get("text_column"),
            text_hash_features=int(d.get("text_hash_features", 0)),
            stacked=stacked if ref is not None else None,
        )


def stacked_reference(stacked: StackedColumns) -> dict[str, Any]:
    """What a recipe's JSON records of its stacked columns model."""
    return {
        "kind": stacked.kind,
        "names": list(stacked.names),
        "inputs": list(stacked.input_columns),
        "sha256": stacked.digest,
    }


@dataclass
class FeatureRows:
    """Model input rows. `text` is set only for specs with hashed text columns."""

    dense: np.ndarray
    text: sp.csr_matrix | None = None
    unseen: dict[str, int] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.dense.shape[0])

    def matrix(self) -> np.ndarray | sp.csr_matrix:
        """Dense rows, or dense and text side by side as one sparse matrix."""
        if self.text is None:
            return self.dense
        import scipy.sparse as sparse

        return sparse.hstack([sparse.csr_matrix(self.dense), self.text], format="csr")


def fit_feature_spec(
    products: pd.DataFrame, features: FeatureConfig, text_hash_features: int = 0
) -> FeatureSpec:
    """Learns the categorical vocabularies (most frequent first, capped) from training products."""
    vocab: dict[str, tuple[str, ...]] = {}
    for col in features.categorical:
        _require(products, [col])
        counts = products[col].astype("string").value_counts(dropna=True)
        # ties broken by value so the spec is deterministic
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab[col] = tuple(str(v) for v, _ in ordered[: features.max_categories])
    return FeatureSpec(
        numeric=tuple(features.numeric),
        boolean=tuple(features.boolean),
        categorical=vocab,
        derived=tuple(features.derived),
        text_column=features.text if text_hash_features else None,
        text_hash_features=text_hash_features,
    )


def _require(products: Products, cols: Sequence[str]) -> None:
    have = products.columns if isinstance(products, pd.DataFrame) else products.schema.names
    missing = [c for c in cols if c not in have]
    if missing:
        raise DataValidationError(
            f"products: feature column {missing[0]!r} is missing; add it to the products query "
            "or remove it from features"
        )


def _float(products: Products, col: str) -> np.ndarray:
    if not isinstance(products, pd.DataFrame):
        return _float_arrow(products, col)
    try:
        return products[col].to_numpy(dtype=np.float32, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataValidationError(
            f"products: column {col!r} has type {products[col].dtype}, expected a number; "
            "cast it in the products query"
        ) from None


def _float_arrow(products: pa.RecordBatch | pa.Table, col: str) -> np.ndarray:
    """`_float` of an Arrow column: numbers and booleans cast in Arrow (nulls become NaN), the same float32
    values numpy's cast gives; any other type goes through pandas, as a frame's column would."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = products.column(col)
    kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        cast = pc.cast(column, pa.float32(), safe=False)
        out: np.ndarray = cast.to_numpy(zero_copy_only=False) if cast.null_count else cast.to_numpy()
        return out.astype(np.float32, copy=False)
    return _float(pd.DataFrame({col: column.to_pandas()}), col)


def _needs_pandas(spec: FeatureSpec) -> bool:
    """True when the recipe reads pandas frames (stacked columns, hashed text)."""
    return spec.stacked is not None or bool(spec.text_column)


def build_features(products: Products, spec: FeatureSpec) -> FeatureRows:
    """Feature rows for `products`, in `spec.names` order.

    Args:
        products: One row per product with at least `spec.input_columns`: a pandas frame, or an Arrow
            record batch or table (read without a pandas copy; the same rows either way).
        spec: The recipe fitted at training time.

    Returns:
        The rows, and per categorical column the number of values not in the training vocabulary.
    """
    _require(products, spec.input_columns)
    if not isinstance(products, pd.DataFrame) and _needs_pandas(spec):
        products = _arrow_to_pandas(products, spec.input_columns)
    n = len(products)
    n_dense = len(spec.dense_names)
    # The source columns first (each contiguous), then copied into the rows block by block.
    columns: list[np.ndarray] = [_float(products, col) for col in (*spec.numeric, *spec.boolean)]
    if spec.derived:
        length, width, height = (_float(products, c) for c in _DIMS)
        for d in spec.derived:
            if d == "volume_cm3":
                columns.append(length * width * height)
            elif d == "max_dim_cm":
                columns.append(np.fmax(np.fmax(length, width), height))
            elif d == "min_dim_cm":
                columns.append(np.fmin(np.fmin(length, width), height))
            elif d == "density_kg_per_l":
                volume_l = length * width * height / 1000.0
                with np.errstate(divide="ignore", invalid="ignore"):
                    columns.append(np.where(volume_l > 0, _float(products, "weight_kg") / volume_l, np.nan))
    unseen: dict[str, int] = {}
    one_hot: list[tuple[int, np.ndarray]] = []  # (first column of the block, each row's code or -1)
    j = len(columns)
    for col, vocab in spec.categorical.items():
        codes, n_unseen = (
            _vocabulary_codes(products[col], vocab)
            if isinstance(products, pd.DataFrame)
            else _vocabulary_codes_arrow(products.column(col), vocab)
        )
        one_hot.append((j, codes))
        unseen[col] = n_unseen
        j += len(vocab)
    # Row-major: XGBoost predicts 3-4% slower from column-major rows. Filled a block of rows at a time so
    # the rows being written stay in cache; column by column over the whole matrix, every column pass
    # went out to memory (3.6x slower on 131k-row batches). Zeroed pages come free (calloc).
    dense = np.zeros((n, n_dense), dtype=np.float32)
    for lo in range(0, n, _FILL_ROWS):
        hi = min(n, lo + _FILL_ROWS)
        rows = dense[lo:hi]
        for k, values in enumerate(columns):
            rows[:, k] = values[lo:hi]
        for first, codes in one_hot:
            block = codes[lo:hi]
            known = np.nonzero(block >= 0)[0]
            rows[known, first + block[known]] = 1.0
    if spec.stacked is not None:
        assert isinstance(products, pd.DataFrame)  # converted above (_needs_pandas)
        dense[:, j : j + len(spec.stacked.names)] = spec.stacked.transform(products)
    text = None
    if spec.text_column:
        assert isinstance(products, pd.DataFrame)
        text = _hash_text(products[spec.text_column], spec.text_hash_features)
    return FeatureRows(dense=dense, text=text, unseen=unseen)


def _vocabulary_codes(values: pd.Series, vocab: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Index of each value in `vocab` (-1 when absent or null) and how many non-null values were absent.

    pyarrow's hash lookup is about ten times faster than a pandas Categorical here, and it does not rely
    on pandas accepting values outside the categories (deprecated).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    vocab_array = pa.array(vocab, type=pa.large_string())
    try:
        array = pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array(values.astype("string"), type=pa.large_string(), from_pandas=True)
    index = pc.index_in(array, value_set=vocab_array)
    codes = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    n_unseen = int(index.null_count - array.null_count)
    return codes, n_unseen


def _vocabulary_codes_arrow(values: pa.Array | pa.ChunkedArray, vocab: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """`_vocabulary_codes` of an Arrow column. A dictionary-encoded column is looked up once per distinct
    value (a dozen, not a batch of rows); a non-string column goes through pandas, as a frame's would."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        lookup = pc.index_in(values.dictionary, value_set=pa.array(vocab, type=kind.value_type))
        per_value = lookup.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        indices = values.indices
        valid = np.ones(len(values), dtype=bool) if not values.null_count else ~values.is_null().to_numpy(
            zero_copy_only=False
        )
        codes = np.full(len(values), -1, dtype=np.int64)
        if len(per_value):
            codes[valid] = per_value[indices.fill_null(0).to_numpy(zero_copy_only=False)[valid]]
        return codes, int(np.count_nonzero(valid & (codes < 0)))
    if _is_text(kind):
        index = pc.index_in(values, value_set=pa.array(vocab, type=kind))
        codes = index.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return codes, int(index.null_count - values.null_count)
    return _vocabulary_codes(values.to_pandas(), vocab)


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _arrow_to_pandas(products: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> pd.DataFrame:
    """The input columns as a pandas frame (as `to_pandas` of the batch gives it), dictionary columns decoded
    to the values a frame read without them would hold."""
    import pyarrow as pa
    import pyarrow.compute as pc

    selected = products.select(list(columns))
    if any(pa.types.is_dictionary(f.type) for f in selected.schema):
        arrays = [pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in selected.columns]
        selected = type(selected).from_arrays(arrays, names=selected.schema.names)
    frame: pd.DataFrame = selected.to_pandas()
    return frame


def _hash_text(titles: pd.Series, n_features: int) -> sp.csr_matrix:
    from sklearn.feature_extraction.text import HashingVectorizer

    # Stateless hashing: nothing to fit, so the model file alone reproduces the columns.
    vectorizer = HashingVectorizer(
        n_features=n_features, alternate_sign=False, ngram_range=(1, 2), norm="l2", lowercase=True
    )
    matrix: sp.csr_matrix = vectorizer.transform(titles.fillna("").astype(str).tolist()).astype(np.float32)
    return matrix
