"""The label and product warehouse: one protocol, one module per backend.

`open_warehouse` picks the backend from `WarehouseConfig.backend` and imports its module only then,
so importing this package never needs a database driver. Every backend speaks the same logical
schema (`TABLES`) and the same named-parameter style (`$week`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias, runtime_checkable

from packwise.errors import WarehouseError

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    import pyarrow as pa

    from packwise.config import WarehouseConfig
    from packwise.warehouse.sql import StagedRun, SwapCounts

    TableData: TypeAlias = pd.DataFrame | pa.Table


class ClosingWarehouse:
    """What every backend shares: used as a context manager, it is closed at the end of the block, and
    `transaction()` nests (an inner block joins the outer one) around the backend's begin/commit/rollback."""

    _tx_depth: int = 0

    def __enter__(self) -> Self:
        """Returns the open warehouse."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the warehouse."""
        self.close()

    def close(self) -> None:
        """Closes the connection; a second call does nothing."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commits everything done inside the block, or rolls all of it back on an exception.

        A block nested inside another joins the outer transaction: only the outermost one begins,
        commits or rolls back.
        """
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        self._begin()
        self._tx_depth = 1
        try:
            yield
        except BaseException:
            self._tx_depth = 0
            self._rollback()
            raise
        self._tx_depth = 0
        self._commit()

    def _begin(self) -> None:
        """Starts the outermost transaction."""
        raise NotImplementedError

    def _commit(self) -> None:
        """Commits the outermost transaction; a failure raises `QueryError`."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """Rolls the outermost transaction back."""
        raise NotImplementedError

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs one statement and discards any result."""
        raise NotImplementedError

    def fetch_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Runs a query and returns its whole result."""
        raise NotImplementedError

    def table_exists(self, name: str) -> bool:
        """Whether a table or view of that name exists in the current schema."""
        found = self.fetch_df(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_name = $name AND table_schema = current_schema()",
            {"name": name},
        )
        return bool(int(found["n"].iloc[0]))

    def ensure_schema(self) -> None:
        """Creates products, labels and run_watermarks if they are missing, in one transaction."""
        with self.transaction():
            for spec in TABLES:
                cols = [f"{col} {self._column_type(sql_type)}" for col, sql_type in spec.columns]
                if spec.primary_key:
                    cols.append(f"PRIMARY KEY ({', '.join(spec.primary_key)})")
                self.execute(f"CREATE TABLE IF NOT EXISTS {spec.name} ({', '.join(cols)})")

    def _column_type(self, portable: str) -> str:
        """A portable column type of `TABLES` in the backend's spelling."""
        return portable


class QueryError(WarehouseError):
    """The database rejected a statement; the message is the database's first line.

    Callers that know which configured query ran catch it and re-raise with the key to fix.
    """


class WarehouseMemoryError(QueryError):
    """A statement needed more memory than the database was given, even spilling (DuckDB past
    ``warehouse.duckdb_memory``); `MemoryBounded.bounded_memory` names the setting to raise."""


@dataclass(frozen=True)
class TableSpec:
    """One table of the logical schema: ordered (column, portable SQL type) pairs and its key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        """The column names in declaration order."""
        return [name for name, _ in self.columns]


PRODUCTS = TableSpec(
    name="products",
    columns=(
        ("product_id", "VARCHAR"),
        ("title", "VARCHAR"),
        ("category", "VARCHAR"),
        ("material", "VARCHAR"),
        ("length_cm", "DOUBLE"),
        ("width_cm", "DOUBLE"),
        ("height_cm", "DOUBLE"),
        ("weight_kg", "DOUBLE"),
        ("fragility", "DOUBLE"),
        ("price", "DOUBLE"),
        ("is_liquid", "BOOLEAN"),
        ("has_battery", "BOOLEAN"),
        ("added_at", "TIMESTAMP"),
    ),
    primary_key=("product_id",),
)

LABELS = TableSpec(
    name="labels",
    columns=(
        ("product_id", "VARCHAR"),
        ("package_type", "VARCHAR"),
        ("label", "SMALLINT"),
        ("week", "INTEGER"),
        ("observed_at", "TIMESTAMP"),
        ("source", "VARCHAR"),
    ),
)

RUN_WATERMARKS = TableSpec(
    name="run_watermarks",
    columns=(
        ("pipeline", "VARCHAR"),
        ("mode", "VARCHAR"),
        ("watermark", "TIMESTAMP"),
        ("run_id", "VARCHAR"),
        ("updated_at", "TIMESTAMP"),
    ),
    primary_key=("pipeline", "mode"),
)

TABLES: tuple[TableSpec, ...] = (PRODUCTS, LABELS, RUN_WATERMARKS)

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def referenced_params(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The subset of `params` that `sql` names as `$name`.

    A user's query may not use every parameter a step offers (a products query without `$week` is
    legal), and DuckDB rejects unused parameters, so backends bind only the referenced ones.
    """
    if not params:
        return {}
    names = set(_PARAM.findall(sql))
    return {k: v for k, v in params.items() if k in names}


def check_identifier(name: str) -> str:
    """Returns `name` if it is a plain SQL identifier; table names are interpolated, never bound."""
    if not _IDENTIFIER.match(name):
        raise WarehouseError(f"table name {name!r} is not a plain identifier; use letters, digits and _")
    return name


def wrap_ordered(sql: str, order_by: Sequence[str]) -> str:
    """Wraps a user's query so its rows come out in a fixed order.

    The newline before the closing parenthesis keeps a trailing `-- comment` from swallowing it.
    """
    body = sql.strip().rstrip(";").strip()
    if not order_by:
        return body
    keys = ", ".join(check_identifier(c) for c in order_by)
    return f"SELECT * FROM (\n{body}\n) AS packwise_ordered ORDER BY {keys}"


@runtime_checkable
class Warehouse(Protocol):
    """What Packwise needs from a warehouse. Parameters are named, written `$name` in SQL."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs one statement and discards any result."""
        ...

    def fetch_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Runs a query and returns its whole result; for small results only."""
        ...

    def copy_query_to_parquet(
        self,
        sql: str,
        params: Mapping[str, Any] | None,
        path: Path,
        order_by: Sequence[str] = (),
        fast: bool = False,
    ) -> int:
        """Streams a query's result, ordered by `order_by`, into one Parquet file; returns its row count.

        The result never sits whole in Python memory, and identical rows give identical bytes. `fast`: a
        working file rather than an archive (the inference extract): LZ4, dictionaries for text columns
        only, statistics for the `order_by` columns only; 3-4x faster to write, about 15% larger. Snapshots
        keep the default settings: their fingerprint is over the file's bytes.
        """
        ...

    def replace_table(self, name: str, data: TableData) -> int:
        """Replaces every row of `name` with `data` (creating it when missing); returns the row count."""
        ...

    def append(self, name: str, data: TableData) -> int:
        """Appends `data` to the existing table `name` (columns matched by name); returns the row count."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Commits everything done inside the block, or rolls all of it back on an exception."""
        ...

    def table_exists(self, name: str) -> bool:
        """Whether the table exists."""
        ...

    def ensure_schema(self) -> None:
        """Creates the tables of `TABLES` that are missing; existing ones are left untouched."""
        ...

    def close(self) -> None:
        """Releases the connection. Calling it twice is harmless."""
        ...

    def __enter__(self) -> Self:
        """Returns the open warehouse."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the warehouse."""
        ...


@runtime_checkable
class ParquetInserter(Protocol):
    """A backend that reads Parquet files itself (DuckDB's ``read_parquet``): rows never pass through Python.

    `packwise.predictions.load_predictions` stages a run with it when the backend has it (5x faster than
    record batches through Arrow on DuckDB at 1M rows).
    """

    def insert_parquet(
        self, name: str, files: Sequence[Path], columns: Mapping[str, str], params: Mapping[str, Any] | None = None
    ) -> int:
        """Inserts one row per row of `files` into `name`; `columns` maps each target column to a SQL
        expression over the files' columns (``$name`` parameters bound from `params`). Returns the rows."""
        ...


@runtime_checkable
class BatchAppender(Protocol):
    """A backend that appends a stream of record batches as ONE bulk write (PostgreSQL: one binary COPY, the
    client encoding a batch while the server parses the one before; about 2x one COPY per table at 1M rows).
    `packwise.predictions` stages a run through it where the backend has it, else a table at a time."""

    def append_batches(self, name: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
        """Appends every batch (of `schema`, columns matched by name) to the existing table `name`; returns
        the rows appended. Inside a transaction, a failure part way leaves nothing once it rolls back."""
        ...


@runtime_checkable
class InheritsTables(Protocol):
    """A backend with PostgreSQL's table inheritance and ``CREATE TABLE ... (LIKE ... INCLUDING ALL)``: its
    predictions are a current table swapped per monthly run beside an append-only history
    (`packwise.prediction_tables`) instead of one table whose current rows a monthly load rewrites."""

    def inherits_tables(self) -> bool:
        """True: the statements of `packwise.prediction_tables` run here."""
        ...


@runtime_checkable
class LoadLock(Protocol):
    """A backend that many processes write at once (PostgreSQL): loads take a lock for their transaction,
    so two runs' loads (a daily job during the monthly one) supersede one after the other, never the same
    products at the same time (two current rows, or a deadlock)."""

    def lock_loads(self) -> None:
        """Waits until no other load holds the lock, then holds it until this transaction ends."""
        ...


@runtime_checkable
class MemoryBounded(Protocol):
    """A backend whose heavy statements run under a memory bound of the task (DuckDB's ``memory_limit``,
    ``warehouse.duckdb_memory``), spilling past it: the load holds it around its whole transaction."""

    def bounded_memory(self, what: str) -> AbstractContextManager[None]:
        """The bound for the block; past it even spilling, `WarehouseMemoryError` naming `what` and the setting."""
        ...


@runtime_checkable
class RowCounter(Protocol):
    """A backend whose UPDATE and DELETE report the rows they changed (DuckDB, PostgreSQL): the load reads
    that count instead of scanning the table a second time to count first."""

    def execute_count(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Runs one UPDATE or DELETE and returns the number of rows it changed."""
        ...


@runtime_checkable
class RunStager(Protocol):
    """A backend that stages and swaps a prediction load its own way (Redshift: COPY from S3 into the stage,
    then the swap as one batch).

    `packwise.predictions.load_predictions` takes the same steps on every backend (ledger, watermark, stage,
    row check, supersede count, swap) and calls these hooks where a backend differs; a backend without them
    does all of it inside one `transaction()`.
    """

    def load_block(self) -> AbstractContextManager[None]:
        """The block the whole load runs in (a transaction, or a write check where the swap is one batch)."""
        ...

    def stage_run(self, run: StagedRun, files: Sequence[Path], batch_rows: int) -> int | None:
        """Creates the run's stage `run.stage` empty (dropping a leftover) and fills it from the scored files.

        Returns the rows staged if the backend knows them all distinct products (product ids seen strictly
        increasing), else None: the load then counts the stage's rows and distinct products in SQL."""
        ...

    def drop_stage(self, stage: str) -> None:
        """Drops the stage after a failed row check, where no rollback does it."""
        ...

    def swap_run(self, run: StagedRun, keep_runs: int | None) -> SwapCounts:
        """Supersedes, inserts, moves the watermark, writes the ledger row, drops the stage and prunes, at once;
        returns the current rows superseded and the history rows pruned."""
        ...


def open_warehouse(config: WarehouseConfig, read_only: bool = False) -> Warehouse:
    """Opens the warehouse that `config.backend` names.

    Args:
        config: The warehouse section of the configuration.
        read_only: Open without write access (DuckDB then allows concurrent readers and never
            creates a missing database file).

    Returns:
        An open warehouse; use it as a context manager to close it.

    Raises:
        WarehouseError: The backend is unknown or the database cannot be opened.
    """
    if config.backend == "duckdb":
        from packwise.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(config.path, read_only=read_only, memory_limit=config.duckdb_memory)
    if config.backend == "postgres":
        from packwise.warehouse.postgres import PostgresWarehouse

        assert config.dsn_env is not None  # the config model guarantees it
        return PostgresWarehouse(config.dsn_env, read_only=read_only)
    if config.backend == "redshift":
        from packwise.warehouse.redshift import RedshiftWarehouse

        return RedshiftWarehouse.from_config(config, read_only=read_only)
    raise WarehouseError(  # pragma: no cover - the config model only admits known backends
        f"unknown warehouse backend {config.backend!r}; set warehouse.backend to duckdb, postgres or redshift"
    )


__all__ = [
    "LABELS",
    "PRODUCTS",
    "RUN_WATERMARKS",
    "TABLES",
    "ParquetInserter",
    "QueryError",
    "RunStager",
    "TableSpec",
    "Warehouse",
    "check_identifier",
    "open_warehouse",
    "referenced_params",
    "wrap_ordered",
]
