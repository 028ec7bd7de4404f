"""PostgreSQL's predictions layout: a current table swapped per monthly run beside an append-only history.

On one table (DuckDB, Redshift, and a PostgreSQL table an earlier release created), a monthly load
rewrites every current row (``UPDATE ... SET is_current = FALSE``, a whole new row version each on
PostgreSQL), and retention deletes a run's rows one by one. Here instead:

- ``predictions_current``: the current row of every product (one each), without an is_current column.
- ``predictions_history``: the superseded rows. A daily load moves the few rows it supersedes into this
  table; a monthly load makes the whole former current table a child of it (``INHERIT``, no row copied).
  ``prediction_history_tables`` lists each child and the runs whose rows it holds.
- ``predictions``: a view of both, with ``is_current`` TRUE for the current rows: the relation and the
  columns the README documents, for every reader.

A monthly load (every row one transaction, with the ledger row): the run's rows go into a new current
table, the current rows of products it did not score move across to it (usually none), the old current
table becomes a history child and the new one takes its name; the view is bound to it again. Readers see
the old rows until the commit, then the new. Indexes and constraints a user put on
``predictions_current`` are carried to each new one (``LIKE ... INCLUDING ALL``). Retention drops a
history child once every run in it is outside ``keep_runs``, and deletes the older runs' rows otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from packwise.errors import WarehouseError
from packwise.prediction_ledger import PREDICTIONS, predictions_columns
from packwise.warehouse.sql import literal

if TYPE_CHECKING:
    from packwise.warehouse import RowCounter, Warehouse
    from packwise.warehouse.sql import StagedRun

CURRENT = "predictions_current"
HISTORY = "predictions_history"
HISTORY_TABLES = "prediction_history_tables"
NEXT = "predictions_current_next"  # a monthly run's rows, before they become the current table
IS_CURRENT = "is_current"


def uses_swapped_tables(warehouse: Warehouse) -> bool:
    """Whether the warehouse holds this layout (a PostgreSQL ``predictions`` of an earlier release is one
    table and keeps loading as such)."""
    return warehouse.table_exists(CURRENT)


def history_table(run_id: str) -> str:
    """The history child a monthly run's swap leaves: the current table it replaced."""
    return f"{HISTORY}_{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"


def _columns(warehouse: Warehouse, table: str) -> list[str]:
    found = warehouse.fetch_df(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $name "
        "AND table_schema = current_schema() ORDER BY ordinal_position",
        {"name": table},
    )
    return [str(c) for c in found["column_name"]]


def create(warehouse: Warehouse, package_types: Sequence[str]) -> None:
    """Creates the tables and the view (inside the caller's transaction)."""
    cols = ", ".join(f"{n} {t}" for n, t in predictions_columns(package_types) if n != IS_CURRENT)
    warehouse.execute(f"CREATE TABLE {CURRENT} ({cols})")
    warehouse.execute(f"CREATE TABLE {HISTORY} ({cols})")
    _create_catalog(warehouse)
    _bind_view(warehouse, [n for n, _ in predictions_columns(package_types)])


def _create_catalog(warehouse: Warehouse) -> None:
    """``prediction_history_tables``: each history table a monthly swap left, and the runs whose rows it holds."""
    warehouse.execute(
        f"CREATE TABLE {HISTORY_TABLES} (table_name VARCHAR, run_id VARCHAR, PRIMARY KEY (table_name, run_id))"
    )


def add_columns(warehouse: Warehouse, package_types: Sequence[str]) -> None:
    """Adds the columns of package types added to the configuration (older rows hold NULL for them) to
    both tables (the history's children inherit them) and to the end of the view."""
    have = set(_columns(warehouse, CURRENT))
    missing = [(n, t) for n, t in predictions_columns(package_types) if n != IS_CURRENT and n not in have]
    for name, sql_type in missing:
        warehouse.execute(f"ALTER TABLE {CURRENT} ADD COLUMN {name} {sql_type}")
        warehouse.execute(f"ALTER TABLE {HISTORY} ADD COLUMN {name} {sql_type}")
    if missing:
        _bind_view(warehouse, _columns(warehouse, PREDICTIONS) + [n for n, _ in missing])


def _bind_view(warehouse: Warehouse, columns: Sequence[str]) -> None:
    """(Re)creates the view over whatever table is named ``predictions_current`` now: a view holds on to
    the table it was created over, through renames. `columns` keeps the view's existing order (a replaced
    view may only add columns at its end)."""

    def select(table: str, current: bool) -> str:
        flag = f"{'TRUE' if current else 'FALSE'} AS {IS_CURRENT}"
        return f"SELECT {', '.join(flag if c == IS_CURRENT else c for c in columns)} FROM {table}"

    warehouse.execute(
        f"CREATE OR REPLACE VIEW {PREDICTIONS} AS {select(CURRENT, True)} UNION ALL {select(HISTORY, False)}"
    )


def stages_next(warehouse: Warehouse, mode: str) -> bool:
    """Whether a load stages its rows straight into the next current table (`stage_next`): a monthly run
    on this layout, through a backend that streams batches in one bulk write."""
    from packwise.warehouse import BatchAppender

    return mode == "monthly" and isinstance(warehouse, BatchAppender) and uses_swapped_tables(warehouse)


def stage_next(warehouse: Warehouse, run: StagedRun, scored: pa.Schema, tables: Iterator[pa.Table]) -> None:
    """Creates the next current table like the current one and appends the run's rows to it, whole, in one
    COPY (no stage written and read again): the scored columns (`tables`, of schema `scored`: product_id,
    recommended_type, the probabilities), cast by the appender to the table's types (float32 to float64 is
    exact, as in the stage's SQL). The run's constants (run id, mode, model versions) are not sent in every
    row: they are the next table's column defaults while it is filled, dropped before it becomes current."""
    from packwise.prediction_ledger import model_version_column
    from packwise.warehouse import BatchAppender

    assert isinstance(warehouse, BatchAppender)
    constants: dict[str, str] = {
        "run_id": literal(run.run_id),
        "mode": literal(run.mode),
        **{model_version_column(t): str(int(run.versions[t])) for t in run.package_types},
    }
    warehouse.execute(f"DROP TABLE IF EXISTS {NEXT}")
    warehouse.execute(f"CREATE TABLE {NEXT} (LIKE {CURRENT} INCLUDING ALL)")
    warehouse.execute(
        f"ALTER TABLE {NEXT} " + ", ".join(f"ALTER COLUMN {c} SET DEFAULT {v}" for c, v in constants.items())
    )
    warehouse.append_batches(NEXT, scored, (batch for table in tables for batch in table.to_batches()))
    warehouse.execute(f"ALTER TABLE {NEXT} " + ", ".join(f"ALTER COLUMN {c} DROP DEFAULT" for c in constants))


def swap(
    warehouse: Warehouse, counter: RowCounter, run: StagedRun, exprs: Mapping[str, str], params: dict[str, Any]
) -> int:
    """Makes the staged run's rows the current ones; returns the current rows it superseded.

    `exprs` are the predictions columns as SQL over the stage (`packwise.predictions._row_expressions`),
    with `params` ($run_id, $mode). A monthly run swaps the current table (see the module docstring); its
    rows are in the next current table already when it staged there (`stages_next`). A daily one, a few
    new products, moves the rows it supersedes into the history in place.
    """
    targets = [c for c in exprs if c != IS_CURRENT]
    values = ", ".join(exprs[c] for c in targets)
    table_cols = ", ".join(_columns(warehouse, CURRENT))
    if run.mode != "monthly":
        superseded = counter.execute_count(
            f"WITH moved AS (DELETE FROM {CURRENT} AS c USING {run.stage} AS s WHERE c.product_id = s.product_id "
            f"RETURNING c.*) INSERT INTO {HISTORY} ({table_cols}) SELECT {table_cols} FROM moved"
        )
        warehouse.execute(f"INSERT INTO {CURRENT} ({', '.join(targets)}) SELECT {values} FROM {run.stage}", params)
        return superseded
    if run.stage != NEXT:
        warehouse.execute(f"DROP TABLE IF EXISTS {NEXT}")
        warehouse.execute(f"CREATE TABLE {NEXT} (LIKE {CURRENT} INCLUDING ALL)")
        warehouse.execute(f"INSERT INTO {NEXT} ({', '.join(targets)}) SELECT {values} FROM {run.stage}", params)
    # Per run of the current rows: how many, and how many of products this run did not score. One query
    # (PostgreSQL runs it in parallel, a DELETE it does not): 0.5 s at 1M products where the DELETE's
    # anti-join alone took 0.8 s, and a monthly run usually scores every current product.
    counts = warehouse.fetch_df(
        f"SELECT c.run_id, count(*) AS n, count(*) FILTER (WHERE s.product_id IS NULL) AS kept FROM {CURRENT} AS c "
        f"LEFT JOIN {run.stage} AS s ON s.product_id = c.product_id GROUP BY c.run_id ORDER BY c.run_id"
    )
    if int(counts["kept"].sum()) > 0:  # those stay current: moved across
        counter.execute_count(
            f"WITH kept AS (DELETE FROM {CURRENT} AS c WHERE NOT EXISTS (SELECT 1 FROM {run.stage} AS s "
            f"WHERE s.product_id = c.product_id) RETURNING c.*) INSERT INTO {NEXT} ({table_cols}) "
            f"SELECT {table_cols} FROM kept"
        )
    runs = counts[counts["n"] > counts["kept"]]
    superseded = int((runs["n"] - runs["kept"]).sum())
    child = history_table(run.run_id)
    warehouse.execute(f"ALTER TABLE {CURRENT} RENAME TO {child}")
    warehouse.execute(f"ALTER TABLE {NEXT} RENAME TO {CURRENT}")
    _bind_view(warehouse, _columns(warehouse, PREDICTIONS))  # the view let go of the old table: now droppable
    if not superseded:
        warehouse.execute(f"DROP TABLE {child}")
        return 0
    warehouse.execute(f"ALTER TABLE {child} INHERIT {HISTORY}")
    for run_id in runs["run_id"]:
        warehouse.execute(
            f"INSERT INTO {HISTORY_TABLES} (table_name, run_id) VALUES ($table, $run_id)",
            {"table": child, "run_id": str(run_id)},
        )
    return superseded


def prune(warehouse: Warehouse, counter: RowCounter, kept_sql: str) -> int:
    """Removes the history rows of every run outside `kept_sql` (SQL selecting the run ids kept); returns
    the rows removed. A history child whose runs are all outside goes whole (DROP TABLE)."""
    kept = {str(r) for r in warehouse.fetch_df(kept_sql)["run_id"]}
    removed = counter.execute_count(f"DELETE FROM ONLY {HISTORY} WHERE run_id NOT IN ({kept_sql})")
    listed = warehouse.fetch_df(f"SELECT table_name, run_id FROM {HISTORY_TABLES} ORDER BY table_name, run_id")
    for table, group in listed.groupby("table_name", sort=True):
        runs = [str(r) for r in group["run_id"]]
        outside = [r for r in runs if r not in kept]
        if not outside:
            continue
        if len(outside) == len(runs):
            removed += int(warehouse.fetch_df(f"SELECT count(*) AS n FROM {table}")["n"].iloc[0])
            warehouse.execute(f"DROP TABLE {table}")
            warehouse.execute(f"DELETE FROM {HISTORY_TABLES} WHERE table_name = $table", {"table": str(table)})
            continue
        for run_id in outside:
            # a literal: the driver reports no changed rows for a DELETE with bound parameters
            removed += counter.execute_count(f"DELETE FROM {table} WHERE run_id = {literal(run_id)}")
            warehouse.execute(
                f"DELETE FROM {HISTORY_TABLES} WHERE table_name = $table AND run_id = $run_id",
                {"table": str(table), "run_id": run_id},
            )
    return removed


MIGRATING = "predictions_before_migration"


@dataclass(frozen=True)
class Migration:
    """What `migrate` did (or, in a dry run, would do)."""

    state: str  # migrated / would migrate / already / no table / one table here
    current: int = 0
    history: int = 0


def migrate(warehouse: Warehouse, dry_run: bool = False) -> Migration:
    """Moves a ``predictions`` table an earlier release created on PostgreSQL into this layout, in one
    transaction under the load lock: its current rows into ``predictions_current``, the others into
    ``predictions_history``, ``predictions`` then the view. The columns, their order and every row stay
    as they were (a check compares the counts before the commit); the old table and its key go.

    Raises:
        WarehouseError: The counts disagree (nothing is changed), or the table holds a product with two
            current rows.
    """
    from packwise.warehouse import InheritsTables, LoadLock, RowCounter, RunStager

    if not isinstance(warehouse, InheritsTables) or isinstance(warehouse, RunStager):
        return Migration("one table here")
    if uses_swapped_tables(warehouse):
        return Migration("already")
    if not warehouse.table_exists(PREDICTIONS):
        return Migration("no table")
    with warehouse.transaction():
        if isinstance(warehouse, LoadLock):
            warehouse.lock_loads()  # no load writes the table while it moves
        counts = warehouse.fetch_df(
            f"SELECT count(*) FILTER (WHERE {IS_CURRENT}) AS current, count(*) FILTER (WHERE NOT {IS_CURRENT}) AS "
            f"history, count(DISTINCT product_id) FILTER (WHERE {IS_CURRENT}) AS products, count(*) AS n "
            f"FROM {PREDICTIONS}"
        ).iloc[0]
        current, history = int(counts["current"]), int(counts["history"])
        if int(counts["products"]) != current or current + history != int(counts["n"]):
            raise WarehouseError(
                f"migrate: {PREDICTIONS} holds {current} current rows of {int(counts['products'])} products and "
                f"{int(counts['n']) - current - history} rows without is_current; fix them first (nothing changed)"
            )
        if dry_run:
            return Migration("would migrate", current, history)
        columns = _columns(warehouse, PREDICTIONS)
        kept = ", ".join(c for c in columns if c != IS_CURRENT)
        warehouse.execute(f"ALTER TABLE {PREDICTIONS} RENAME TO {MIGRATING}")
        for table in (CURRENT, HISTORY):
            warehouse.execute(f"CREATE TABLE {table} (LIKE {MIGRATING})")  # the columns only: no key
            warehouse.execute(f"ALTER TABLE {table} DROP COLUMN {IS_CURRENT}")
        _create_catalog(warehouse)
        assert isinstance(warehouse, RowCounter)
        moved = warehouse.execute_count(
            f"INSERT INTO {CURRENT} ({kept}) SELECT {kept} FROM {MIGRATING} WHERE {IS_CURRENT}"
        ), warehouse.execute_count(
            f"INSERT INTO {HISTORY} ({kept}) SELECT {kept} FROM {MIGRATING} WHERE NOT {IS_CURRENT}"
        )
        if moved != (current, history):
            raise WarehouseError(f"migrate: moved {moved} rows, counted {(current, history)} (nothing changed)")
        warehouse.execute(f"DROP TABLE {MIGRATING}")
        _bind_view(warehouse, columns)
    return Migration("migrated", current, history)
