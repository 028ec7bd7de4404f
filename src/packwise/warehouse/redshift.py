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

Credentials come from the standard AWS chain (IRSA on EKS) and, for the database, from
`warehouse.redshift_secret_arn` (Secrets Manager) or temporary credentials for `redshift_db_user`.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from packwise.errors import WarehouseError
from packwise.files import atomic_write
from packwise.warehouse import TABLES, ClosingWarehouse, QueryError, check_identifier, wrap_ordered
from packwise.warehouse.duckdb import _as_arrow, _write_parquet
from packwise.warehouse.postgres import server_type
from packwise.warehouse.sql import StagedRun, create_stage, render, stage_columns, swap_statements

if TYPE_CHECKING:
    from packwise.config import WarehouseConfig
    from packwise.predictions import LoadResult
    from packwise.warehouse import TableData

BACKEND = "redshift"
_DONE = {"FINISHED"}
_BROKEN = {"FAILED", "ABORTED"}
_ARROW_TYPES: dict[str, pa.DataType] = {
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "char": pa.string(),
    "text": pa.string(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "numeric": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "no error text"


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` → ("bucket", "a/b") without a trailing slash."""
    if not url.startswith("s3://"):
        raise WarehouseError(f"{url!r} is not an s3:// URL; set warehouse.redshift_s3_staging to s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def _redshift_type(field: pa.Field) -> str:
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int16(t) or pa.types.is_int8(t):
        return "SMALLINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_float32(t):
        return "REAL"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    return "VARCHAR(65535)"


def _field_value(field: Mapping[str, Any]) -> Any:
    if field.get("isNull"):
        return None
    for key in ("stringValue", "longValue", "doubleValue", "booleanValue"):
        if key in field:
            return field[key]
    return None  # pragma: no cover - blobValue, never selected by Packwise


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
        self._client = client
        self._s3 = s3
        self.bucket, self.prefix = split_s3_url(s3_staging)
        self.iam_role = iam_role
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.read_only = read_only
        self._sleep = sleep
        self._target: dict[str, str] = {"Database": database}
        if cluster:
            self._target["ClusterIdentifier"] = cluster
        if workgroup:
            self._target["WorkgroupName"] = workgroup
        if db_user:
            self._target["DbUser"] = db_user
        if secret_arn:
            self._target["SecretArn"] = secret_arn
        self._queue: list[str] | None = None
        self._tx_depth = 0
        self._closed = False
        self._run("SELECT 1")  # unreachable cluster, bad credentials: fail here, before anything is written

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

    # -- the Data API ----------------------------------------------------------------------------

    def _where(self) -> str:
        return self._target.get("ClusterIdentifier") or f"workgroup {self._target.get('WorkgroupName')}"

    def _submit(self, call: str, **kwargs: Any) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = getattr(self._client, call)(**self._target, **kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            text = _first_line(err.response.get("Error", {}).get("Message", str(err)))
            fix = (
                "grant redshift-data:* and access to the secret to the role running Packwise"
                if code in {"AccessDeniedException", "UnrecognizedClientException"}
                else "check warehouse.redshift_cluster/redshift_workgroup, redshift_database and the credentials"
            )
            raise WarehouseError(f"redshift warehouse {self._where()}: {code}: {text}; {fix}") from None
        except BotoCoreError as err:
            raise WarehouseError(
                f"redshift warehouse: cannot reach the Data API: {_first_line(str(err))}; "
                "check warehouse.aws_region and the network"
            ) from None
        return str(response["Id"])

    def _wait(self, statement_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            described: dict[str, Any] = self._client.describe_statement(Id=statement_id)
            status = described.get("Status")
            if status in _DONE:
                return described
            if status in _BROKEN:
                error = _first_line(described.get("Error") or status)
                raise QueryError(f"redshift: {error}")
            if time.monotonic() >= deadline:
                try:
                    self._client.cancel_statement(Id=statement_id)
                finally:
                    raise QueryError(
                        f"redshift: statement {statement_id} still {status} after {self.timeout_s:g} s (cancelled); "
                        "raise warehouse.statement_timeout_s or make the query cheaper"
                    )
            self._sleep(self.poll_s)

    def _run(self, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        statement_id = self._submit("execute_statement", Sql=render(sql, params))
        return self._wait(statement_id)

    def _write_check(self) -> None:
        if self.read_only:
            raise QueryError("redshift: the warehouse was opened read-only")

    # -- queries ---------------------------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs one statement, or queues it when inside `transaction()`.

        Raises:
            QueryError: Redshift rejected the statement.
        """
        if self._queue is not None:
            self._queue.append(render(sql, params))
            return
        self._run(sql, params)

    def fetch_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Runs a query and returns its whole result (every page) as a DataFrame; for small results only.

        Raises:
            QueryError: Redshift rejected the query.
        """
        described = self._run(sql, params)
        if not described.get("HasResultSet", True):
            return pd.DataFrame()
        columns: list[dict[str, Any]] = []
        rows: list[list[Any]] = []
        token: str | None = None
        while True:
            page = self._client.get_statement_result(Id=described["Id"], **({"NextToken": token} if token else {}))
            columns = columns or page.get("ColumnMetadata", [])
            rows += [[_field_value(f) for f in record] for record in page.get("Records", [])]
            token = page.get("NextToken")
            if not token:
                break
        frame = pd.DataFrame(rows, columns=[c["name"] for c in columns])
        for column in columns:
            if column.get("typeName") == "timestamp":
                frame[column["name"]] = pd.to_datetime(frame[column["name"]])
        return frame

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
        prefix = f"{self.prefix}/unload/{uuid.uuid4().hex}/".lstrip("/")
        quoted = query.replace("'", "''")
        self._run(
            f"UNLOAD ('{quoted}') TO 's3://{self.bucket}/{prefix}part_' IAM_ROLE '{self.iam_role}' "
            "FORMAT AS PARQUET PARALLEL OFF"
        )
        keys = self._keys(prefix)
        try:
            with tempfile.TemporaryDirectory(prefix="packwise-unload-") as scratch, atomic_write(Path(path)) as tmp:
                reader = self._parts_reader(keys, Path(scratch)) if keys else self._empty_reader(query)
                rows = _write_parquet(reader, tmp, order_by if fast else None)
        finally:
            self._delete(keys)
        return rows

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def _parts_reader(self, keys: Sequence[str], scratch: Path) -> pa.RecordBatchReader:
        """The parts' batches in key order, one part on local disk at a time."""
        first = scratch / "part"
        self._s3.download_file(self.bucket, keys[0], str(first))
        schema = pq.read_schema(first).remove_metadata()

        def batches() -> Iterator[pa.RecordBatch]:
            for index, key in enumerate(keys):
                if index:
                    self._s3.download_file(self.bucket, key, str(first))
                for batch in pq.ParquetFile(first).iter_batches(batch_size=65_536):
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                first.unlink()

        return pa.RecordBatchReader.from_batches(schema, batches())

    def _empty_reader(self, query: str) -> pa.RecordBatchReader:
        """No part written (no rows): the schema from the query's column metadata."""
        described = self._run(f"SELECT * FROM (\n{query}\n) AS packwise_empty LIMIT 0")
        page = self._client.get_statement_result(Id=described["Id"])
        schema = pa.schema(
            [pa.field(c["name"], _ARROW_TYPES.get(c.get("typeName", ""), pa.string())) for c in page["ColumnMetadata"]]
        )
        return pa.RecordBatchReader.from_batches(schema, iter(()))

    # -- writes ----------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Queues the block's statements and sends them as one `batch_execute_statement` (one transaction).

        Nothing reaches Redshift when the block raises. A nested block joins the outer one.
        """
        if self._queue is not None:
            yield
            return
        self._queue = []
        try:
            yield
            queued = self._queue
        finally:
            self._queue = None
        if queued:
            self._batch(queued)

    def _batch(self, statements: Sequence[str]) -> None:
        self._write_check()
        statement_id = self._submit("batch_execute_statement", Sqls=list(statements))
        self._wait(statement_id)

    def _columns(self, name: str) -> list[tuple[str, str]]:
        found = self.fetch_df(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $name "
            "AND table_schema = current_schema() ORDER BY ordinal_position",
            {"name": name},
        )
        return list(zip(found["column_name"], found["data_type"], strict=True))

    def _upload(self, tables: Iterator[pa.Table]) -> str:
        """Writes each table as one Parquet object under a fresh prefix; returns the prefix's s3:// URL."""
        prefix = f"{self.prefix}/copy/{uuid.uuid4().hex}/".lstrip("/")
        with tempfile.TemporaryDirectory(prefix="packwise-copy-") as scratch:
            for index, table in enumerate(tables):
                local = Path(scratch) / f"part-{index:05d}.parquet"
                pq.write_table(table, local, compression="zstd")
                self._s3.upload_file(str(local), self.bucket, f"{prefix}part-{index:05d}.parquet")
                local.unlink()
        return f"s3://{self.bucket}/{prefix}"

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
        url = self._upload(iter([table]))
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
                cols = ", ".join(f"{f.name} {_redshift_type(f)}" for f in table.schema)
                self.execute(f"CREATE TABLE {name} ({cols})")
            self.execute(self.copy_statement(name, self._upload(iter([table]))))
        return table.num_rows

    def table_exists(self, name: str) -> bool:
        """Whether a table or view of that name exists in the current schema."""
        found = self.fetch_df(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_name = $name AND table_schema = current_schema()",
            {"name": name},
        )
        return bool(int(found["n"].iloc[0]))

    def ensure_schema(self) -> None:
        """Creates products, labels and run_watermarks if they are missing (one batch)."""
        with self.transaction():
            for spec in TABLES:
                cols = [f"{col} {server_type(sql_type)}" for col, sql_type in spec.columns]
                if spec.primary_key:
                    cols.append(f"PRIMARY KEY ({', '.join(spec.primary_key)})")
                self.execute(f"CREATE TABLE IF NOT EXISTS {spec.name} ({', '.join(cols)})")

    # -- the exactly-once prediction load --------------------------------------------------------

    def load_run(
        self,
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
        """`packwise.predictions.load_predictions` for Redshift: COPY the shards into a staging table, then
        supersede + insert + watermark + ledger + stage drop + retention (`keep_runs`) in ONE
        `batch_execute_statement`.

        Until that batch commits nothing but the run's own staging table exists, and a rerun drops it
        first; once it commits, the ledger row makes a rerun a no-op.
        """
        from packwise.faults import maybe_fail
        from packwise.predictions import (
            LoadResult,
            _ensure_tables,
            _iso,
            _stage_name,
            already_loaded,
            previous_run,
            prune_statements,
            read_watermark,
        )

        self._write_check()
        _ensure_tables(self, package_types)
        done = already_loaded(self, run_id)
        if done is not None:
            return done
        before = read_watermark(self, mode)
        previous = previous_run(self, mode, run_id)
        stage = _stage_name(run_id)
        superseded = 0
        if expected_rows > 0:
            for statement in create_stage(stage, package_types):
                self._run(statement)
            url = self._upload(_shard_tables(files, package_types, batch_rows))
            self._run(self.copy_statement(stage, url))
            counts = self.fetch_df(f"SELECT count(*) AS n, count(DISTINCT product_id) AS d FROM {stage}")
            n, distinct = int(counts["n"].iloc[0]), int(counts["d"].iloc[0])
            if n != expected_rows or distinct != n:
                self._run(f"DROP TABLE IF EXISTS {stage}")
                raise WarehouseError(
                    f"load: the scored files hold {n} rows ({distinct} distinct products), expected "
                    f"{expected_rows}; re-run the pipeline to rescore (nothing was loaded)"
                )
            found = self.fetch_df(
                f"SELECT count(*) AS n FROM predictions WHERE is_current "
                f"AND product_id IN (SELECT product_id FROM {stage})"
            )
            superseded = int(found["n"].iloc[0])
        after = before
        if expected_rows > 0 and watermark is not None:
            after = watermark if before is None else max(before, watermark)
        run = StagedRun(
            stage=stage,
            run_id=run_id,
            mode=mode,
            package_types=package_types,
            versions=versions,
            n_products=expected_rows,
            since=since,
            watermark=watermark,
            watermark_after=after if expected_rows > 0 and watermark is not None else None,
            recommended=recommended,
            unseen=unseen,
            loaded_at=datetime.now(UTC).replace(tzinfo=None),
        )
        maybe_fail("load-predictions", "commit")
        self._batch([*swap_statements(run), *prune_statements(keep_runs)])
        return LoadResult(
            run_id=run_id,
            loaded=True,
            n_products=expected_rows,
            superseded=superseded,
            watermark_before=_iso(before),
            watermark_after=_iso(after),
            previous=previous,
            recommended=dict(recommended),
        )


def _shard_tables(files: Sequence[Path], package_types: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
    """Each scored shard with the staging table's column order and types (strings, doubles)."""
    columns = stage_columns(package_types)
    names = [n for n, _ in columns]
    for path in files:
        parts = []
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=names):
            arrays = [batch.column(n).cast(pa.string() if t == "VARCHAR" else pa.float64()) for n, t in columns]
            parts.append(pa.table(arrays, names=names))
        if parts:
            yield pa.concat_tables(parts)


__all__ = ["RedshiftWarehouse", "split_s3_url"]
