"""Scores product files with the resolved model of every package type, one record batch at a time.

A shard is read with `ParquetFile.iter_batches` (per file: a dataset scanner's readahead grew memory
six-fold in the prototype; and without pre_buffer, which keeps every row group read until the end),
feature rows come from `packwise.features.build_features` with each model's own recipe (built once per
distinct recipe: models trained on the same snapshot share one), and `Booster.inplace_predict` scores
them without a DMatrix copy (or oneDAL does, on dense rows: `packwise.engine`, ``inference.engine``).
Memory is bounded by a batch, whatever the shard size. With four cores or more, or with oneDAL, reading and
feature building of the next batch overlap the prediction of the current one in a thread of their own, and
the scored batches are encoded and written in another (both engines release the GIL while they predict),
so the predicting thread only predicts. Measured on two cores, 5M rows, four oneDAL models: 7.3-7.6 s for the
file with the writer thread, 7.5-7.6 s without it (it wrote from the predicting thread), 7.9 s with neither
thread; the predictions alone take 6.4 s.

Output rows: product_id, `prob_<package type>` (float32, in configuration order) and `recommended_type`,
the least protective type whose probability clears its threshold, the last (most protective) type when
none does.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from packwise import progress
from packwise.cores import task_threads
from packwise.engine import predict_proba, prepare_onedal, resolve_engine, set_onedal_threads
from packwise.features import FeatureRows, FeatureSpec, build_features
from packwise.files import atomic_write
from packwise.score_stats import ScoreStats

if TYPE_CHECKING:
    import xgboost as xgb

    from packwise.recommendation import CostModel

PRODUCT_ID = "product_id"
RECOMMENDED = "recommended_type"
PROB_PREFIX = "prob_"

# Floats do not repeat, so a dictionary only costs time (3.4x slower writes in the prototype); the
# recommended type is a handful of values and compresses to almost nothing with one.
_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "use_dictionary": [RECOMMENDED],
    "write_statistics": [PRODUCT_ID],
}


def prob_column(package_type: str) -> str:
    """Name of the suitability probability column of a package type."""
    return f"{PROB_PREFIX}{package_type}"


@dataclass(frozen=True)
class ScoringModel:
    """The model that scores one package type in this run."""

    package_type: str
    version: int
    booster: xgb.Booster
    spec: FeatureSpec
    threshold: float


def recommend(prob: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Index of the recommended package type of every row.

    Args:
        prob: Suitability probabilities, one column per package type, least protective first.
        thresholds: The threshold of each column.

    Returns:
        Per row, the first column whose probability is at least its threshold; the last column when none is.
    """
    if prob.ndim != 2 or prob.shape[1] != len(thresholds) or prob.shape[1] == 0:
        raise ValueError(f"expected probabilities of {len(thresholds)} package types, got shape {prob.shape}")
    # Most protective first, so the least protective type that clears is written last; one pass per
    # column (4x faster than a rows x types mask with argmax, and contiguous on column-major input).
    limits = np.asarray(thresholds, dtype=prob.dtype)  # compared in the probabilities' precision
    out = np.full(prob.shape[0], prob.shape[1] - 1, dtype=np.int32)
    for j in range(prob.shape[1] - 2, -1, -1):
        out[prob[:, j] >= limits[j]] = j
    return out


def output_schema(package_types: Sequence[str]) -> pa.Schema:
    """Schema of a scored file."""
    fields = [pa.field(PRODUCT_ID, pa.string(), nullable=False)]
    fields += [pa.field(prob_column(t), pa.float32(), nullable=False) for t in package_types]
    fields.append(pa.field(RECOMMENDED, pa.dictionary(pa.int32(), pa.string()), nullable=False))
    return pa.schema(fields)


def recommend_with(prob: np.ndarray, thresholds: Sequence[float], cost: CostModel | None) -> np.ndarray:
    """The recommended type of every row under ``inference.policy``: the lowest expected cost (`cost`), else
    the first type past its threshold (`recommend`). Wherever the rows were scored (in the task or in
    SageMaker jobs), this picks."""
    return cost.pick(prob) if cost is not None and cost.policy == "cost" else recommend(prob, thresholds)


class Scorer:
    """Scores product frames with one model per package type (in configuration order)."""

    def __init__(
        self,
        models: Sequence[ScoringModel],
        threads: int = 0,
        prefetch: bool | None = None,
        cost: CostModel | None = None,
        engine: str = "auto",
    ) -> None:
        if not models:
            raise ValueError("no models to score with")
        self.models = list(models)
        self.cost = cost  # the cost policy and expected cost (packwise.recommendation); None: threshold only
        nthread = threads or task_threads()
        # The tree engine (packwise.engine): oneDAL on dense rows where it imports, XGBoost otherwise.
        self.engine = resolve_engine(engine)
        # Overlapping reads and features with prediction: XGBoost already uses every core, and on two cores
        # the prefetch thread slowed its prediction more than it hid; oneDAL's leaves room (on two cores,
        # 5M rows scored in 12.2-12.4 s with it, 13.4-13.7 s without, the same predict seconds). Hashed-text
        # recipes are scored by XGBoost whatever the engine.
        if prefetch is None:
            all_onedal = self.engine == "onedal" and all(m.spec.text_column is None for m in self.models)
            prefetch = nthread >= 4 or all_onedal
        self.prefetch = prefetch
        self.package_types = [m.package_type for m in self.models]
        self.thresholds = [m.threshold for m in self.models]
        # Models sharing a recipe share one feature build per batch.
        self._spec_keys = [m.spec.to_json() for m in self.models]
        self._specs = {k: m.spec for k, m in zip(self._spec_keys, self.models, strict=True)}
        for m in self.models:
            # The training run's nthread travels inside the model file; scoring decides its own.
            m.booster.set_param({"nthread": nthread})
        if self.engine == "onedal":
            set_onedal_threads(nthread)
            for m in self.models:
                if m.spec.text_column is None:  # hashed text goes to XGBoost
                    prepare_onedal(m.booster)

    @property
    def _dictionary_columns(self) -> list[str]:
        """Categorical columns read dictionary-encoded (a dozen distinct strings, not a string per row),
        unless a recipe reads pandas frames (stacked columns, hashed text): those read plain strings."""
        if any(spec.stacked is not None or spec.text_column for spec in self._specs.values()):
            return []
        return sorted({c for spec in self._specs.values() for c in spec.categorical})

    @property
    def input_columns(self) -> list[str]:
        """Product columns any model reads, product_id first."""
        cols = [PRODUCT_ID]
        for spec in self._specs.values():
            cols += [c for c in spec.input_columns if c not in cols]
        return cols

    def features(self, products: pd.DataFrame | pa.RecordBatch) -> dict[str, FeatureRows]:
        """Feature rows of every distinct recipe."""
        return {key: build_features(products, spec) for key, spec in self._specs.items()}

    def predict(self, rows: dict[str, FeatureRows]) -> tuple[np.ndarray, float]:
        """Probabilities (rows x package types, float32) and the seconds spent predicting.

        Column-major: each type's probabilities are contiguous, for the recommendation and the output.
        """
        n = next(iter(rows.values())).n_rows
        prob = np.empty((len(self.models), n), dtype=np.float32)
        spent = 0.0
        if n == 0:
            return prob.T, spent
        matrices = {k: r.matrix() for k, r in rows.items()}
        for j, (model, key) in enumerate(zip(self.models, self._spec_keys, strict=True)):
            start = time.perf_counter()
            prob[j] = predict_proba(model.booster, matrices[key], self.engine)
            spent += time.perf_counter() - start
        return prob.T, spent

    def unseen(self, rows: dict[str, FeatureRows]) -> dict[str, int]:
        """Per categorical column, products whose value a model never saw (the largest count over recipes)."""
        out: dict[str, int] = {}
        for r in rows.values():
            for col, n in r.unseen.items():
                out[col] = max(out.get(col, 0), n)
        return out

    def score_file(self, in_path: Path, out_path: Path, batch_rows: int = 131_072) -> ScoreStats:
        """Scores one product file into `out_path` (written beside it, then renamed).

        Args:
            in_path: Parquet with product_id and every input column of the models.
            out_path: The scored file (see `output_schema`).
            batch_rows: Rows per record batch.

        Returns:
            Row count, recommended type counts, unseen category counts and timings.
        """
        start = time.perf_counter()
        stats = ScoreStats(recommended={t: 0 for t in self.package_types})
        names = pa.array(self.package_types, type=pa.string())
        schema = output_schema(self.package_types)
        total_rows, batches = self._read(in_path, batch_rows)
        progress.advance(0, total_rows, "rows")
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_write(out_path))
            writer: _BatchWriter = stack.enter_context(pq.ParquetWriter(tmp, schema, **_WRITE_OPTIONS))
            if self.prefetch:  # encoding and compressing the output off the predicting thread too
                writer = stack.enter_context(_background_writer(writer))
            prepared = (
                _prefetch(batches, self._prepare) if self.prefetch else ((b, self._prepare(b)) for b in batches)
            )
            for batch, rows in prepared:
                prob, spent = self.predict(rows)
                cost = self.cost
                rec = recommend_with(prob, self.thresholds, cost)
                columns: list[pa.Array] = [batch.column(PRODUCT_ID).cast(pa.string())]
                columns += [pa.array(prob[:, j]) for j in range(prob.shape[1])]
                columns.append(pa.DictionaryArray.from_arrays(pa.array(rec, type=pa.int32()), names))
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
                counts = np.bincount(rec, minlength=len(self.package_types))
                batch_stats = ScoreStats(
                    rows=batch.num_rows,
                    recommended={t: int(c) for t, c in zip(self.package_types, counts, strict=True)},
                    unseen=self.unseen(rows),
                    seconds_predict=spent,
                    expected_cost=None if cost is None else cost.expected(prob, rec),
                )
                stats.add(batch_stats)
                progress.advance(stats.rows, total_rows, "rows")
        stats.seconds = time.perf_counter() - start
        return stats

    def unseen_in_file(self, in_path: Path, batch_rows: int = 131_072) -> dict[str, int]:
        """`unseen` of a whole product file, counted batch by batch as `score_file` counts it (feature rows of
        one batch at a time, never the file's whole matrix): for a shard scored elsewhere (SageMaker)."""
        total = ScoreStats(recommended={})
        for batch in self._read(in_path, batch_rows)[1]:
            total.add(ScoreStats(recommended={}, unseen=self.unseen(self._prepare(batch))))
        return dict(total.unseen)

    def _read(self, in_path: Path, batch_rows: int) -> tuple[int, Iterator[pa.RecordBatch]]:
        """The file's row count and its record batches of the models' input columns."""
        # pre_buffer caches every row group read until the reader closes: memory grew with the file
        source = pq.ParquetFile(in_path, pre_buffer=False, read_dictionary=self._dictionary_columns)
        # One thread per reader: Arrow's column-parallel decoding let peak memory grow with the
        # file (+16% from 1M to 5M rows), one reader thread keeps it flat.
        batches = source.iter_batches(batch_size=batch_rows, columns=self.input_columns, use_threads=False)
        return source.metadata.num_rows, batches

    def _prepare(self, batch: pa.RecordBatch) -> dict[str, FeatureRows]:
        # Arrow columns straight into the feature rows: no pandas copy (recipes that read pandas get one)
        return self.features(batch)


_DONE = object()


class _BatchWriter(Protocol):
    def write_batch(self, batch: pa.RecordBatch) -> None: ...


class _WriterThread:
    """`write_batch` handed to a thread of its own, one batch queued at most; its error is raised here."""

    def __init__(self, writer: _BatchWriter) -> None:
        self._writer = writer
        self._slots: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="packwise-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (batch := self._slots.get()) is not _DONE:
            if self._error is None:
                try:
                    self._writer.write_batch(batch)
                except BaseException as err:  # raised by the next write_batch or by finish
                    self._error = err

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._raise()
        self._slots.put(batch)

    def finish(self) -> None:
        self._slots.put(_DONE)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


@contextmanager
def _background_writer(writer: _BatchWriter) -> Iterator[_WriterThread]:
    """A `_WriterThread` for `writer`, finished (every batch written, or the first error raised) on a clean
    exit and stopped on an error, so the file is closed only once the thread is done with it."""
    thread = _WriterThread(writer)
    try:
        yield thread
    except BaseException:
        with contextlib.suppress(BaseException):
            thread.finish()
        raise
    thread.finish()


def _prefetch(
    batches: Iterator[pa.RecordBatch], prepare: Callable[[pa.RecordBatch], dict[str, FeatureRows]]
) -> Iterator[tuple[pa.RecordBatch, dict[str, FeatureRows]]]:
    """Reads and featurizes the next batch in a thread while the caller predicts the current one.

    One batch ahead at most, so memory stays at about two batches. An error in the thread is raised here.
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work() -> None:
        try:
            for batch in batches:
                item = (batch, prepare(batch))
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as err:  # handed to the consumer, which raises it
            slots.put(err)

    thread = threading.Thread(target=work, name="packwise-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # drain so a producer blocked on put sees the stop flag
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.1)
        thread.join()
