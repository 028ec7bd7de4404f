"""The S3 staging prefix of the Redshift warehouse: what COPY reads and UNLOAD writes.

- COPY input: Parquet objects under ``s3://<staging>/copy/<id>/``, one per table handed over.
- UNLOAD output: the parts under ``s3://<staging>/unload/<id>/``, read back one at a time (bounded memory).
- The Arrow ↔ Redshift types both directions need.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from packwise.errors import WarehouseError
from packwise.warehouse.sql import stage_columns

ARROW_TYPES: dict[str, pa.DataType] = {
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


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` → ("bucket", "a/b") without a trailing slash."""
    if not url.startswith("s3://"):
        raise WarehouseError(f"{url!r} is not an s3:// URL; set warehouse.redshift_s3_staging to s3://bucket/prefix")
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def redshift_type(field: pa.Field) -> str:
    """The Redshift column type of an Arrow field (a table created from the rows)."""
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


class S3Staging:
    """The staging prefix: `s3` a boto3 S3 client, `url` the ``s3://bucket/prefix`` COPY and UNLOAD use."""

    def __init__(self, s3: Any, url: str) -> None:
        self.s3 = s3
        self.bucket, self.prefix = split_s3_url(url)

    def fresh(self, kind: str) -> str:
        """A new key prefix ``<prefix>/<kind>/<random>/`` for one COPY or UNLOAD."""
        return f"{self.prefix}/{kind}/{uuid.uuid4().hex}/".lstrip("/")

    def upload(self, tables: Iterator[pa.Table]) -> str:
        """Writes each table as one Parquet object under a fresh prefix; returns the prefix's s3:// URL."""
        prefix = self.fresh("copy")
        with tempfile.TemporaryDirectory(prefix="packwise-copy-") as scratch:
            for index, table in enumerate(tables):
                local = Path(scratch) / f"part-{index:05d}.parquet"
                pq.write_table(table, local, compression="zstd")
                self.s3.upload_file(str(local), self.bucket, f"{prefix}part-{index:05d}.parquet")
                local.unlink()
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str) -> list[str]:
        """The object keys under `prefix`, sorted."""
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, keys: Sequence[str]) -> None:
        """Deletes the objects (1000 a call)."""
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def parts_reader(self, keys: Sequence[str], scratch: Path) -> pa.RecordBatchReader:
        """The parts' batches in key order, one part on local disk at a time."""
        first = scratch / "part"
        self.s3.download_file(self.bucket, keys[0], str(first))
        schema = pq.read_schema(first).remove_metadata()

        def batches() -> Iterator[pa.RecordBatch]:
            for index, key in enumerate(keys):
                if index:
                    self.s3.download_file(self.bucket, key, str(first))
                for batch in pq.ParquetFile(first).iter_batches(batch_size=65_536):
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                first.unlink()

        return pa.RecordBatchReader.from_batches(schema, batches())


def shard_tables(files: Sequence[Path], package_types: Sequence[str], batch_rows: int) -> Iterator[pa.Table]:
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
