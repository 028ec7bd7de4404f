"""The predictions table and its exactly-once loader.

The tables (``predictions``, the ``prediction_runs`` ledger, ``run_watermarks``), the ledger and watermark
reads and `LoadResult` are in `packwise.prediction_ledger`; they are re-exported here, the import path
callers use.

A load stages the run's rows in a table of its own (DuckDB: inserts them straight from the scored files
with its own Parquet reader and checks them in place), then, in the same transaction, supersedes the
current rows of those products, inserts the new ones, writes the ledger row, moves the watermark and prunes the
history (``inference.keep_runs``: the superseded rows of every run but the newest ``keep_runs`` runs of
its mode that scored products are deleted; a current row is never deleted, whatever its run; the ledger
keeps one row per run id forever, so a pruned run is still never loaded twice). On PostgreSQL a monthly
run stages straight into a new current table, which replaces the old one, and the old one becomes
history (`packwise.prediction_tables`). The ledger
row makes it exactly once per run id: loading a run id again changes nothing. A failure anywhere before
the commit (or a killed process) rolls all of it back, the stage included, so the previous predictions
and the watermark stay as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from packwise import prediction_tables, progress
from packwise.arrow_rows import KeyOrder
from packwise.errors import WarehouseError
from packwise.prediction_ledger import (
    MODES,
    PIPELINE,
    PREDICTION_RUNS,
    PREDICTIONS,
    RUNS_COLUMNS,
    WATERMARKS,
    LoadResult,
    already_loaded,
    check_run_mode,
    current_predictions,
    daily_since,
    ensure_tables,
    iso_or_none,
    model_version_column,
    predictions_columns,
    previous_run,
    read_watermark,
)
from packwise.scoring import PRODUCT_ID, RECOMMENDED, prob_column
from packwise.warehouse.sql import StagedRun, SwapCounts, ledger_values, superseded_by

if TYPE_CHECKING:
    from packwise.warehouse import Warehouse

__all__ = [
    "MODES",
    "PIPELINE",
    "PREDICTIONS",
    "PREDICTION_RUNS",
    "WATERMARKS",
    "LoadResult",
    "already_loaded",
    "check_run_mode",
    "current_predictions",
    "daily_since",
    "ensure_tables",
    "iso_or_none",
    "load_predictions",
    "model_version_column",
    "predictions_columns",
    "previous_run",
    "prune_statements",
    "read_watermark",
]


def _kept_runs(keep_runs: int) -> str:
    """SQL selecting the run ids whose history is kept: of each mode, the newest `keep_runs` runs that scored
    products (a month of daily runs does not push the monthly runs' history out)."""
    return (
        "SELECT run_id FROM (SELECT run_id, row_number() OVER (PARTITION BY mode ORDER BY loaded_at DESC, "
        f"run_id DESC) AS newest FROM {PREDICTION_RUNS} WHERE n_products > 0) AS ranked "
        f"WHERE newest <= {int(keep_runs)}"
    )


def _runs_outside(warehouse: Warehouse, keep_runs: int | None) -> bool:
    """Whether the ledger holds, of some mode, more runs that scored products than `keep_runs` keeps: until
    it does, no row can be pruned and the prune's scan of the whole predictions table is skipped."""
    if keep_runs is None:
        return False
    found = warehouse.fetch_df(
        f"SELECT count(*) AS n FROM {PREDICTION_RUNS} WHERE n_products > 0 GROUP BY mode ORDER BY n DESC LIMIT 1"
    )
    return len(found) > 0 and int(found["n"].iloc[0]) > keep_runs


def prune_statements(keep_runs: int | None) -> list[str]:
    """The retention statements a load runs in its transaction, after its ledger row (none when unbounded).

    Superseded rows (``NOT is_current``) of the runs outside the newest `keep_runs` of their mode go;
    current rows stay, so every product keeps exactly one current prediction.
    """
    if keep_runs is None:
        return []
    if keep_runs < 1:
        raise WarehouseError(f"inference.keep_runs is {keep_runs}: use 1 or more, or null to keep every run")
    return [f"DELETE FROM {PREDICTIONS} WHERE NOT is_current AND run_id NOT IN ({_kept_runs(keep_runs)})"]


def _stage_name(run_id: str) -> str:
    return f"prediction_stage_{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"


def _stage_schema(package_types: Sequence[str]) -> pa.Schema:
    """The Arrow schema of `_stage_batches`' tables."""
    fields = [(PRODUCT_ID, pa.string()), (RECOMMENDED, pa.string())]
    return pa.schema(fields + [(prob_column(t), pa.float32()) for t in package_types])


def _stage_batches(
    files: Sequence[Path], package_types: Sequence[str], batch_rows: int, order: KeyOrder
) -> Iterator[pa.Table]:
    """The scored rows as staging batches: the columns that vary by row (`_stage_columns`), as scored.

    The run's constants (run id, mode, model versions) are not staged: `_InTransaction.swap_run` writes
    them in its INSERT, so the COPY carries 6 columns of about 40 bytes a row, not 12 of about 90.
    `order` sees every batch's product ids, in the order they are staged.
    """
    schema = _stage_schema(package_types)
    for path in files:
        source = pq.ParquetFile(path, pre_buffer=False)
        for batch in source.iter_batches(batch_size=batch_rows, use_threads=False):
            n = batch.num_rows
            if n == 0:
                continue
            table = pa.table([batch.column(f.name).cast(f.type) for f in schema], schema=schema)
            order.see(table.column(PRODUCT_ID))
            yield table


def _row_expressions(package_types: Sequence[str], versions: Mapping[str, int]) -> dict[str, str]:
    """Every predictions column, in the table's types, as SQL over rows of product_id, recommended_type and
    the probabilities (a scored file, DuckDB's direct insert; or PostgreSQL's stage) and the run's $run_id
    and $mode. float32 to float64 is exact: the stored probabilities are the scored ones."""
    declared = dict(predictions_columns(package_types))
    exprs = {c: f"CAST({c} AS {declared[c]})" for c in (PRODUCT_ID, RECOMMENDED, *map(prob_column, package_types))}
    exprs["run_id"] = f"CAST($run_id AS {declared['run_id']})"
    exprs["mode"] = f"CAST($mode AS {declared['mode']})"
    for t in package_types:
        exprs[model_version_column(t)] = f"CAST({int(versions[t])} AS {declared[model_version_column(t)]})"
    exprs["is_current"] = "TRUE"
    return exprs


def _check_loaded_rows(n: int, distinct: int, expected_rows: int) -> None:
    """The run's rows, staged or inserted, are `expected_rows` distinct products, or nothing is loaded."""
    if n != expected_rows or distinct != n:
        raise WarehouseError(
            f"load: the scored files hold {n} rows ({distinct} distinct products), expected "
            f"{expected_rows}; re-run the pipeline to rescore (nothing was loaded)"
        )


def _insert_direct(
    warehouse: Any,
    files: Sequence[Path],
    run_id: str,
    mode: str,
    package_types: Sequence[str],
    versions: Mapping[str, int],
    expected_rows: int,
) -> None:
    """DuckDB's load body: the scored files straight into `predictions` (DuckDB's own Parquet reader, no
    row through Python, no stage written and read again), and checked there; `_InTransaction.swap_run`
    then supersedes the older current rows of those products. Inside the load's transaction: a failed check
    rolls the rows back with it. A run id outside the ledger has no rows in the table (its rows only ever
    commit with its ledger row), so ``run_id = $run_id`` selects exactly the rows just inserted.
    """
    progress.phase("inserting")
    columns = _row_expressions(package_types, versions)
    from packwise.warehouse import QueryError, WarehouseMemoryError

    try:
        n = int(warehouse.insert_parquet(PREDICTIONS, files, columns, {"run_id": run_id, "mode": mode}))
    except WarehouseMemoryError:
        raise  # its fix is the memory setting (`bounded_memory`), not a rescore
    except QueryError as err:  # e.g. a table keyed before (product_id, run_id) meeting a duplicate product
        raise WarehouseError(
            f"load: the scored files could not be inserted ({err}); re-run the pipeline to rescore "
            "(nothing was loaded)"
        ) from None
    progress.phase("checking")
    this_run = f"SELECT product_id FROM {PREDICTIONS} WHERE run_id = $run_id"
    found = warehouse.fetch_df(f"SELECT count(DISTINCT product_id) AS d FROM ({this_run})", {"run_id": run_id})
    distinct = int(found["d"].iloc[0])
    _check_loaded_rows(n, distinct, expected_rows)


def load_predictions(
    warehouse: Warehouse,
    files: Sequence[Path],
    *,
    run_id: str,
    mode: str,
    package_types: Sequence[str],
    versions: Mapping[str, int],
    expected_rows: int,
    since: datetime | None,
    watermark: datetime | None,
    recommended: Mapping[str, int],
    unseen: Mapping[str, int],
    batch_rows: int = 131_072,
    keep_runs: int | None = None,
) -> LoadResult:
    """Loads a run's scored files exactly once, in one transaction.

    Args:
        warehouse: An open, writable warehouse.
        files: The run's scored files (see `packwise.scoring.output_schema`).
        run_id: The run; a run id already in the ledger is not loaded again.
        mode: `daily` or `monthly`.
        package_types: Package types, in configuration order.
        versions: The model version that scored each package type.
        expected_rows: Rows the files must hold together (a shortfall is an error, nothing is written).
        since: The watermark the run's products were selected after (daily), for the ledger.
        watermark: The largest `added_at` among the run's products; the mode's watermark moves to it
            (never backwards) when the run scored any product.
        recommended: Count of each recommended type, for the ledger.
        unseen: Unseen category counts per column, for the ledger.
        batch_rows: Rows per staging batch.
        keep_runs: ``inference.keep_runs``: the history kept (see the module docstring); None keeps all.

    Returns:
        What was loaded, or that the run had been loaded already.

    Raises:
        WarehouseError: The files do not hold `expected_rows` distinct products; nothing is written.
    """
    from packwise.warehouse import RunStager

    if mode not in MODES:
        raise WarehouseError(f"mode {mode!r}: use daily or monthly")
    prune_statements(keep_runs)  # checks keep_runs before anything is written
    stager: RunStager = warehouse if isinstance(warehouse, RunStager) else _InTransaction(warehouse)
    with stager.load_block():
        ensure_tables(warehouse, package_types)
        done = already_loaded(warehouse, run_id, mode)
        if done is not None:
            return done
        before = read_watermark(warehouse, mode)
        previous = previous_run(warehouse, mode, run_id)
        after = before
        moves = expected_rows > 0 and watermark is not None
        if expected_rows > 0 and watermark is not None:
            after = watermark if before is None else max(before, watermark)
        # PostgreSQL's monthly run stages straight into its next current table (`prediction_tables`)
        next_table = prediction_tables.stages_next(warehouse, mode) and isinstance(stager, _InTransaction)
        run = StagedRun(
            stage=prediction_tables.NEXT if next_table else _stage_name(run_id),
            run_id=run_id,
            mode=mode,
            package_types=package_types,
            versions=versions,
            n_products=expected_rows,
            since=since,
            watermark=watermark,
            watermark_after=after if moves else None,
            recommended=recommended,
            unseen=unseen,
            loaded_at=_now(),
        )
        if expected_rows > 0 and isinstance(stager, _InTransaction) and stager.direct:
            _insert_direct(warehouse, files, run_id, mode, package_types, versions, expected_rows)
        elif expected_rows > 0:
            progress.phase("staging")
            staged = stager.stage_run(run, files, batch_rows)
            progress.phase("checking")
            if staged is not None:  # every product id came above the one before: all distinct
                n = distinct = staged
            else:
                counts = warehouse.fetch_df(f"SELECT count(*) AS n, count(DISTINCT product_id) AS d FROM {run.stage}")
                n, distinct = int(counts["n"].iloc[0]), int(counts["d"].iloc[0])
            try:
                _check_loaded_rows(n, distinct, expected_rows)
            except WarehouseError:
                stager.drop_stage(run.stage)
                raise
        progress.phase("swapping")
        swapped = stager.swap_run(run, keep_runs)
        progress.phase("committing")  # the block's end: the transaction commits (DuckDB writes the rows out)
    return LoadResult(
        run_id=run_id,
        loaded=True,
        n_products=expected_rows,
        superseded=swapped.superseded,
        watermark_before=iso_or_none(before),
        watermark_after=iso_or_none(after),
        previous=previous,
        recommended=dict(recommended),
        pruned=swapped.pruned,
    )


class _InTransaction:
    """`RunStager` for the backends without one of their own (DuckDB, PostgreSQL): the whole load is one
    `transaction()`, so a failure anywhere rolls the stage back with everything else."""

    def __init__(self, warehouse: Warehouse) -> None:
        from packwise.warehouse import ParquetInserter, RowCounter

        if not isinstance(warehouse, RowCounter):
            raise WarehouseError(
                f"{type(warehouse).__name__} can load predictions only if it counts the rows its UPDATE and DELETE "
                "change (execute_count) or stages loads its own way (RunStager); implement one of them"
            )
        self.warehouse = warehouse
        self.counter: RowCounter = warehouse  # the same connection: its UPDATE and DELETE report their rows
        # DuckDB reads the scored files itself, straight into predictions (`_insert_direct`): no stage
        self.direct = isinstance(warehouse, ParquetInserter)

    @contextmanager
    def load_block(self) -> Iterator[None]:
        """The load's transaction, under the backend's memory bound where it has one (DuckDB: the insert, the
        row check's distinct count and the supersede's join spill past ``warehouse.duckdb_memory``; the bound
        covers the commit, where DuckDB writes the rows out), holding its load lock where it has one
        (PostgreSQL: a load waits for another one's commit, then finds the ledger as that one left it)."""
        from packwise.warehouse import LoadLock, MemoryBounded

        with contextlib.ExitStack() as stack:
            if isinstance(self.warehouse, MemoryBounded):
                stack.enter_context(self.warehouse.bounded_memory("the load"))
            stack.enter_context(self.warehouse.transaction())
            if isinstance(self.warehouse, LoadLock):  # PostgreSQL: one load at a time supersedes
                self.warehouse.lock_loads()
            yield

    def stage_run(self, run: StagedRun, files: Sequence[Path], batch_rows: int) -> int | None:
        """PostgreSQL's stage: the rows through Arrow batches in one COPY; a monthly run on the swapped layout
        copies whole rows straight into the next current table (`prediction_tables.stage_next`). DuckDB
        inserts straight into predictions (`_insert_direct`) and has no stage.

        Returns the rows staged when their product ids came strictly increasing (shards cut from an extract
        ordered by product id, each scored in order), so the row check needs no count(DISTINCT) over the
        stage; None when they did not, and the check counts in SQL.
        """
        from packwise.warehouse import BatchAppender

        wh = self.warehouse
        order = KeyOrder()
        if run.stage == prediction_tables.NEXT:
            scored = _stage_batches(files, run.package_types, batch_rows, order)
            prediction_tables.stage_next(wh, run, _stage_schema(run.package_types), scored)
            # The swap joins on product_id alone: its statistics are what the planner needs (0.2-0.3 s for
            # every column of 1M rows, 0.07-0.1 s less for the one), and from a sample of 3,000 rows (the
            # statistics target 10, not 100: 11 ms against 61-70 ms at 1M) as well as 30,000: every value is
            # distinct either way, and the join's plan and time were the same. A partial ANALYZE leaves the
            # table's change counter as it is, so autovacuum soon analyzes every column at the server's target.
            wh.execute("SET LOCAL default_statistics_target = 10")
            wh.execute(f"ANALYZE {run.stage} ({PRODUCT_ID})")
            wh.execute("RESET default_statistics_target")
            return order.distinct_rows()
        stage_cols = _stage_columns(run.package_types)
        wh.execute(f"DROP TABLE IF EXISTS {run.stage}")
        # UNLOGGED (PostgreSQL): the stage skips the write-ahead log; it lives and dies inside this
        # transaction, so a crash loses nothing a rollback would not have dropped anyway.
        wh.execute(f"CREATE UNLOGGED TABLE {run.stage} ({', '.join(f'{n} {t}' for n, t in stage_cols)})")
        tables = _stage_batches(files, run.package_types, batch_rows, order)
        if isinstance(wh, BatchAppender):  # PostgreSQL: every batch in one COPY
            batches = (batch for table in tables for batch in table.to_batches())
            wh.append_batches(run.stage, _stage_schema(run.package_types), batches)
        else:
            for table in tables:
                wh.append(run.stage, table)
        wh.execute(f"ANALYZE {run.stage}")  # row counts for the planner: a hash join in the swap
        return order.distinct_rows()

    def drop_stage(self, stage: str) -> None:
        """Nothing to do: the error that follows rolls the transaction, the stage included, back."""

    def swap_run(self, run: StagedRun, keep_runs: int | None) -> SwapCounts:
        from packwise.faults import maybe_fail

        wh = self.warehouse
        superseded = 0
        swapped = not self.direct and prediction_tables.uses_swapped_tables(wh)  # PostgreSQL's layout
        if run.n_products > 0 and swapped:
            progress.phase("superseding")
            exprs = _row_expressions(run.package_types, run.versions)
            params = {"run_id": run.run_id, "mode": run.mode}
            superseded = prediction_tables.swap(wh, self.counter, run, exprs, params)
            if run.stage != prediction_tables.NEXT:  # the next table is the current one now
                wh.execute(f"DROP TABLE {run.stage}")
        elif run.n_products > 0:
            progress.phase("superseding")
            if self.direct:  # DuckDB's rows are in already, under their run id
                this_run = f"SELECT product_id FROM {PREDICTIONS} WHERE run_id = $run_id"
                superseded = self.counter.execute_count(
                    f"UPDATE {PREDICTIONS} SET is_current = FALSE "
                    f"WHERE is_current AND run_id <> $run_id AND product_id IN ({this_run})",
                    {"run_id": run.run_id},
                )
            else:
                superseded = self.counter.execute_count(
                    f"UPDATE {PREDICTIONS} SET is_current = FALSE WHERE {superseded_by(run.stage)}"
                )
                columns = _row_expressions(run.package_types, run.versions)
                wh.execute(
                    f"INSERT INTO {PREDICTIONS} ({', '.join(columns)}) SELECT {', '.join(columns.values())} "
                    f"FROM {run.stage}",
                    {"run_id": run.run_id, "mode": run.mode},
                )
                wh.execute(f"DROP TABLE {run.stage}")
        progress.phase("recording")  # the watermark and the ledger row
        if run.watermark_after is not None:
            wh.execute(
                f"INSERT INTO {WATERMARKS} (pipeline, mode, watermark, run_id, updated_at) "
                "VALUES ($pipeline, $mode, $watermark, $run_id, $now) "
                "ON CONFLICT (pipeline, mode) DO UPDATE SET watermark = excluded.watermark, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at",
                {
                    "pipeline": PIPELINE,
                    "mode": run.mode,
                    "watermark": run.watermark_after,
                    "run_id": run.run_id,
                    "now": run.loaded_at,
                },
            )
        wh.execute(
            f"INSERT INTO {PREDICTION_RUNS} ({', '.join(n for n, _ in RUNS_COLUMNS)}) VALUES "
            "($run_id, $mode, $n, $since, $watermark, $models, $recommended, $unseen, $now)",
            ledger_values(run),
        )
        pruned = 0
        progress.phase("pruning")
        if swapped and keep_runs is not None and _runs_outside(wh, keep_runs):
            pruned = prediction_tables.prune(wh, self.counter, _kept_runs(keep_runs))
        elif not swapped:
            for statement in prune_statements(keep_runs) if _runs_outside(wh, keep_runs) else []:
                pruned += self.counter.execute_count(statement)
        # Resume drills: PACKWISE_FAIL_TASK=load-predictions/commit fails here, everything written, not committed.
        maybe_fail("load-predictions", "commit")
        return SwapCounts(superseded=superseded, pruned=pruned)


def _stage_columns(package_types: Sequence[str]) -> list[tuple[str, str]]:
    """The in-transaction stage (PostgreSQL): the columns that vary by row, probabilities as scored (REAL)."""
    return [(PRODUCT_ID, "VARCHAR"), (RECOMMENDED, "VARCHAR"), *((prob_column(t), "REAL") for t in package_types)]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


