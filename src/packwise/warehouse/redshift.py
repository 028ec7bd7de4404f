"""The Amazon Redshift warehouse, through the Redshift Data API (boto3 `redshift-data`), with S3 staging.

- Extracts run as `UNLOAD ('<query>') TO 's3://<staging>/unload/<id>/' IAM_ROLE '<role>' FORMAT AS PARQUET
  PARALLEL OFF` (PARALLEL OFF keeps the ORDER BY across the part files); the parts are then read from S3 one
  at a time into the local Parquet writer, so memory stays bounded.
- Appends and prediction loads upload Parquet to `s3://<staging>/copy/<id>/` and run `COPY ... FROM ... IAM_ROLE
  ... FORMAT AS PARQUET` into the table or the run's staging table.
- `transaction()` queues the statements of its block and sends them as one `batch_execute_statement`,
  which Redshift runs as one transaction. Reads inside the block see the committed state, not the queue.
- Every statement is polled with `describe_statement` until it finishes, up to `statement_timeout_s`
  (botocore has no waiter for redshift-data); a FAILED statement raises Redshift's error text.

The Data API calls live in `packwise.warehouse.redshift_api`, the S3 staging prefix (COPY input, UNLOAD
output, Arrow types) in `packwise.warehouse.redshift_s3`; this module is the `Warehouse` on top of them.

Credentials come from the standard AWS chain (IRSA on EKS) and, for the database, from
`warehouse.redshift_secret_arn` (Secrets Manager) or temporary credentials for `redshift_db_user`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from packwise.errors import WarehouseError
from packwise.files import atomic_write
from packwise.warehouse import ClosingWarehouse, QueryError, check_identifier, wrap_ordered
from packwise.warehouse.duckdb import _as_arrow, _write_parquet
from packwise.warehouse.postgres import server_type
from packwise.warehouse.redshift_api import DataApi
from packwise.warehouse.redshift_s3 import ARROW_TYPES, S3Staging, redshift_type, shard_tables, split_s3_url
from packwise.warehouse.sql import SwapCounts, create_stage, render, superseded_by, swap_statements

if TYPE_CHECKING:
    from packwise.config import WarehouseConfig
    from packwise.warehouse import TableData
    from packwise.warehouse.sql import StagedRun

BACKEND = "redshift"


class RedshiftWarehouse(ClosingWarehouse):
    """A `Warehouse` on Amazon Redshift (provisioned or Serverless) through the Data API.

    Args:
        client: A boto3 `redshift-data` client.
        s3: A boto3 `s3` client for the staging prefix.
        database: Database name.
        iam_role: IAM role ARN that UNLOAD and COPY assume to reach the staging prefix.
        s3_staging: `s3://bucket/prefix` for UNLOAD output and COPY input.
        cluster: Provisioned cluster identifier (or `workgroup`).
        workgroup: Serverless workgroup name (or `cluster`).
        db_user: Database user for temporary credentials (provisioned clusters).
        secret_arn: Secrets Manager secret holding the database credentials.
        timeout_s: Longest wait for one statement.
        poll_s: Pause between two `describe_statement` calls.
        read_only: Refuse writes (Packwise-side; the database user's grants are the real guard).
        sleep: The pause function (tests pass a no-op).
    """

    def __init__(
        self,
        client: Any,
        s3: Any,
        *,
        database: str,
        iam_role: str,
        s3_staging: str,
        cluster: str | None = None,
        workgroup: str | None = None,
        db_user: str | None = None,
        secret_arn: str | None = None,
        timeout_s: float = 900.0,
        poll_s: float = 0.5,
        read_only: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._staging = S3Staging(s3, s3_staging)
        self.iam_role = iam_role
        self.read_only = read_only
        target: dict[str, str] = {"Database": database}
        if cluster:
            target["ClusterIdentifier"] = cluster
        if workgroup:
            target["WorkgroupName"] = workgroup
        if db_user:
            target["DbUser"] = db_user
        if secret_arn:
            target["SecretArn"] = secret_arn
        self._api = DataApi(client, target, timeout_s, poll_s, sleep)
        self._queue: list[str] | None = None
        self._closed = False
        self._api.run("SELECT 1")  # unreachable cluster, bad credentials: fail here, before anything is written

    @classmethod
    def from_config(cls, config: WarehouseConfig, read_only: bool = False) -> RedshiftWarehouse:
        """Builds the clients from the standard AWS credential chain and the warehouse section."""
        import boto3

        session = boto3.session.Session(region_name=config.aws_region)
        kwargs: dict[str, Any] = {"endpoint_url": config.aws_endpoint_url} if config.aws_endpoint_url else {}
        assert config.redshift_database and config.redshift_iam_role and config.redshift_s3_staging
        return cls(
            session.client("redshift-data", **kwargs),
            session.client("s3", **kwargs),
            database=config.redshift_database,
            iam_role=config.redshift_iam_role,
            s3_staging=config.redshift_s3_staging,
            cluster=config.redshift_cluster,
            workgroup=config.redshift_workgroup,
            db_user=config.redshift_db_user,
            secret_arn=config.redshift_secret_arn,
            timeout_s=config.statement_timeout_s,
            read_only=read_only,
        )

    # -- context manager -------------------------------------------------------------------------

    def close(self) -> None:
        """Forgets any queued statements; the Data API holds no connection. A second call does nothing."""
        self._closed = True
        self._queue = None

    # -- queries ---------------------------------------------------------------------------------

    def _write_check(self) -> None:
        if self.read_only:
            raise QueryError("redshift: the warehouse was opened read-only")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs one statement, or queues it when inside `transaction()`.

        Raises:
            QueryError: Redshift rejected the statement.
        """
        if self._queue is not None:
            self._queue.append(render(sql, params))
            return
        self._api.run(sql, params)

    def fetch_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Runs a query and returns its whole result (every page) as a DataFrame; for small results only.

        Raises:
            QueryError: Redshift rejected the query.
        """
        return self._api.fetch_df(sql, params)

    def copy_query_to_parquet(
        self,
        sql: str,
        params: Mapping[str, Any] | None,
        path: Path,
        order_by: Sequence[str] = (),
        fast: bool = False,
    ) -> int:
        """UNLOADs the query's rows to the staging prefix, then streams the parts into one Parquet file.

        Returns:
            The number of rows written.

        Raises:
            QueryError: The UNLOAD failed (Redshift's error text).
        """
        query = render(wrap_ordered(sql, order_by), params)
        staging = self._staging
        prefix = staging.fresh("unload")
        quoted = query.replace("'", "''")
        self._api.run(
            f"UNLOAD ('{quoted}') TO 's3://{staging.bucket}/{prefix}part_' IAM_ROLE '{self.iam_role}' "
            "FORMAT AS PARQUET PARALLEL OFF"
        )
        keys = staging.keys(prefix)
        try:
            with tempfile.TemporaryDirectory(prefix="packwise-unload-") as scratch, atomic_write(Path(path)) as tmp:
                reader = staging.parts_reader(keys, Path(scratch)) if keys else self._empty_reader(query)
                rows = _write_parquet(reader, tmp, order_by if fast else None)
        finally:
            staging.delete(keys)
        return rows

    def _empty_reader(self, query: str) -> pa.RecordBatchReader:
        """No part written (no rows): the schema from the query's column metadata."""
        described = self._api.run(f"SELECT * FROM (\n{query}\n) AS packwise_empty LIMIT 0")
        schema = pa.schema(
            [
                pa.field(c["name"], ARROW_TYPES.get(c.get("typeName", ""), pa.string()))
                for c in self._api.columns(described["Id"])
            ]
        )
        return pa.RecordBatchReader.from_batches(schema, iter(()))

    # -- writes ----------------------------------------------------------------------------------

    # `transaction()` (the base's) queues the block's statements and sends them as one
    # `batch_execute_statement` (one transaction); nothing reaches Redshift when the block raises.

    def _begin(self) -> None:
        self._queue = []

    def _rollback(self) -> None:
        self._queue = None

    def _commit(self) -> None:
        queued, self._queue = self._queue, None
        if queued:
            self._batch(queued)

    def _batch(self, statements: Sequence[str]) -> None:
        self._write_check()
        self._api.batch(statements)

    def _columns(self, name: str) -> list[tuple[str, str]]:
        found = self.fetch_df(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $name "
            "AND table_schema = current_schema() ORDER BY ordinal_position",
            {"name": name},
        )
        return list(zip(found["column_name"], found["data_type"], strict=True))

    def copy_statement(self, name: str, url: str) -> str:
        """`COPY name FROM url IAM_ROLE ... FORMAT AS PARQUET`."""
        return f"COPY {check_identifier(name)} FROM '{url}' IAM_ROLE '{self.iam_role}' FORMAT AS PARQUET"

    def _fit(self, table: pa.Table, columns: Sequence[tuple[str, str]]) -> pa.Table:
        """COPY from Parquet matches columns by position: reorder to the table's, NULL for the missing."""
        out = []
        for column, _ in columns:
            if column in table.column_names:
                out.append(table.column(column))
            else:
                out.append(pa.nulls(table.num_rows, pa.string()))
        extra = set(table.column_names) - {c for c, _ in columns}
        if extra:
            raise WarehouseError(f"redshift warehouse: the rows have columns {sorted(extra)} the table lacks")
        return pa.table(out, names=[c for c, _ in columns])

    def append(self, name: str, data: TableData) -> int:
        """Uploads `data` to the staging prefix and COPYs it into the existing table `name`.

        Returns:
            The number of rows appended.

        Raises:
            WarehouseError: The table does not exist.
        """
        self._write_check()
        name = check_identifier(name)
        columns = self._columns(name)
        if not columns:
            raise WarehouseError(
                f"redshift warehouse: table {name} does not exist; run `packwise seed` to create the schema"
            )
        table = self._fit(_as_arrow(data), columns)
        url = self._staging.upload(iter([table]))
        self.execute(self.copy_statement(name, url))
        return table.num_rows

    def replace_table(self, name: str, data: TableData) -> int:
        """Replaces every row of `name` with `data` in one transaction; creates the table when missing."""
        self._write_check()
        name = check_identifier(name)
        table = _as_arrow(data)
        columns = self._columns(name)
        with self.transaction():
            if columns:
                self.execute(f"DELETE FROM {name}")
                table = self._fit(table, columns)
            else:
                cols = ", ".join(f"{f.name} {redshift_type(f)}" for f in table.schema)
                self.execute(f"CREATE TABLE {name} ({cols})")
            self.execute(self.copy_statement(name, self._staging.upload(iter([table]))))
        return table.num_rows

    def _column_type(self, portable: str) -> str:
        return server_type(portable)

    # -- the exactly-once prediction load (`RunStager`) ----------------------------------------------
    # `packwise.predictions.load_predictions` takes the steps; here the shards are COPYed into a staging
    # table, then supersede + insert + watermark + ledger + stage drop + retention go as ONE
    # `batch_execute_statement`. Until that batch commits nothing but the run's own staging table exists,
    # and a rerun drops it first; once it commits, the ledger row makes a rerun a no-op.

    @contextmanager
    def load_block(self) -> Iterator[None]:
        """No transaction around the load (its reads must see what it created); writes must be allowed."""
        self._write_check()
        yield

    def stage_run(self, run: StagedRun, files: Sequence[Path], batch_rows: int) -> None:
        """Creates the stage, uploads the shards to the staging prefix and COPYs them in. The rows reach
        the stage from S3, not through this process: the load counts them in SQL (None)."""
        for statement in create_stage(run.stage, run.package_types):
            self._api.run(statement)
        url = self._staging.upload(shard_tables(files, run.package_types, batch_rows))
        self._api.run(self.copy_statement(run.stage, url))

    def drop_stage(self, stage: str) -> None:
        """Drops the stage (the load runs outside a transaction, so nothing rolls it back)."""
        self._api.run(f"DROP TABLE IF EXISTS {stage}")

    def swap_run(self, run: StagedRun, keep_runs: int | None) -> SwapCounts:
        """Sends the swap and the retention as one batch (one transaction). The rows it will supersede are
        counted just before (a batch reports no row counts); the rows pruned are not counted."""
        from packwise.faults import maybe_fail
        from packwise.prediction_ledger import PREDICTIONS
        from packwise.predictions import prune_statements

        superseded = 0
        if run.n_products > 0:
            found = self.fetch_df(f"SELECT count(*) AS n FROM {PREDICTIONS} WHERE {superseded_by(run.stage)}")
            superseded = int(found["n"].iloc[0])
        maybe_fail("load-predictions", "commit")
        self._batch([*swap_statements(run), *prune_statements(keep_runs)])
        return SwapCounts(superseded=superseded, pruned=None)


__all__ = ["RedshiftWarehouse", "split_s3_url"]
