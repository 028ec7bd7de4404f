"""The DuckDB warehouse backend and the backend-neutral helpers."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.config import WarehouseConfig
from packwise.errors import WarehouseError
from packwise.warehouse import (
    LABELS,
    PRODUCTS,
    RUN_WATERMARKS,
    QueryError,
    Warehouse,
    WarehouseMemoryError,
    check_identifier,
    open_warehouse,
    referenced_params,
    wrap_ordered,
)
from packwise.warehouse import duckdb as duckdb_backend
from packwise.warehouse.duckdb import DuckDBWarehouse


@pytest.fixture()
def wh() -> DuckDBWarehouse:
    with DuckDBWarehouse(":memory:") as warehouse:
        warehouse.ensure_schema()
        yield warehouse


def _labels(n: int, week: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": [f"P{i:07d}" for i in range(n)],
            "package_type": ["bag"] * n,
            "label": [i % 2 for i in range(n)],
            "week": [week] * n,
            "observed_at": pd.Series([datetime(2026, 1, 5)] * n, dtype="datetime64[us]"),
            "source": ["shipment"] * n,
        }
    )


def test_open_warehouse_returns_a_duckdb_backend_satisfying_the_protocol(tmp_path: Path) -> None:
    with open_warehouse(WarehouseConfig(path=tmp_path / "sub" / "wh.duckdb")) as warehouse:
        assert isinstance(warehouse, DuckDBWarehouse)
        assert isinstance(warehouse, Warehouse)
    assert (tmp_path / "sub" / "wh.duckdb").exists()


def test_read_only_on_a_missing_file_says_to_seed_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="packwise seed") as info:
        open_warehouse(WarehouseConfig(path=tmp_path / "missing" / "wh.duckdb"), read_only=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "missing").exists()


def test_read_only_reads_but_refuses_writes(tmp_path: Path) -> None:
    cfg = WarehouseConfig(path=tmp_path / "wh.duckdb")
    with open_warehouse(cfg) as warehouse:
        warehouse.ensure_schema()
        warehouse.append("labels", _labels(3))
    with open_warehouse(cfg, read_only=True) as warehouse:
        assert warehouse.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 3
        with pytest.raises(QueryError):
            warehouse.execute("DELETE FROM labels")


def test_ensure_schema_creates_the_three_tables_with_declared_types_and_is_idempotent(
    wh: DuckDBWarehouse,
) -> None:
    wh.append("labels", _labels(2))
    wh.ensure_schema()  # a second call neither fails nor empties anything
    assert wh.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 2
    for spec in (PRODUCTS, LABELS, RUN_WATERMARKS):
        assert wh.table_exists(spec.name)
        cols = wh.fetch_df(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $t "
            "ORDER BY ordinal_position",
            {"t": spec.name},
        )
        assert list(zip(cols["column_name"], cols["data_type"], strict=True)) == [*spec.columns]


def test_run_watermarks_primary_key_is_enforced(wh: DuckDBWarehouse) -> None:
    insert = "INSERT INTO run_watermarks VALUES ('inference', $mode, now(), 'r1', now())"
    wh.execute(insert, {"mode": "daily"})
    with pytest.raises(QueryError, match=r"(?i)constraint|duplicate"):
        wh.execute(insert, {"mode": "daily"})
    wh.execute(
        "INSERT INTO run_watermarks VALUES ('inference', 'daily', now(), 'r2', now()) "
        "ON CONFLICT (pipeline, mode) DO UPDATE SET run_id = excluded.run_id"
    )
    assert wh.fetch_df("SELECT run_id FROM run_watermarks")["run_id"].tolist() == ["r2"]


def test_params_not_named_by_the_query_are_ignored(wh: DuckDBWarehouse) -> None:
    wh.append("labels", _labels(4))
    df = wh.fetch_df("SELECT count(*) AS n FROM labels", {"week": 3})
    assert df["n"].iloc[0] == 4
    df = wh.fetch_df("SELECT count(*) AS n FROM labels WHERE label = $label", {"label": 1, "week": 3})
    assert df["n"].iloc[0] == 2


def test_sql_errors_become_one_line_query_errors(wh: DuckDBWarehouse) -> None:
    with pytest.raises(QueryError) as info:
        wh.fetch_df("SELECT no_such_column FROM labels")
    assert isinstance(info.value, WarehouseError)
    assert "\n" not in str(info.value) and "no_such_column" in str(info.value)


def test_replace_table_keeps_declared_types_and_replaces_all_rows(wh: DuckDBWarehouse) -> None:
    wh.append("labels", _labels(5))
    df = _labels(3, week=2)
    df["label"] = df["label"].astype("int64")  # wider than the table's SMALLINT
    assert wh.replace_table("labels", df) == 3
    out = wh.fetch_df("SELECT * FROM labels")
    assert len(out) == 3 and set(out["week"]) == {2}
    types = wh.fetch_df("SELECT data_type FROM information_schema.columns WHERE column_name = 'label'")
    assert types["data_type"].tolist() == ["SMALLINT"]


def test_replace_table_creates_a_missing_table_from_arrow(wh: DuckDBWarehouse) -> None:
    table = pa.table({"product_id": ["P1", "P2"], "score": [0.1, 0.9]})
    assert wh.replace_table("predictions", table) == 2
    assert wh.table_exists("predictions")
    assert wh.fetch_df("SELECT sum(score) AS s FROM predictions")["s"].iloc[0] == pytest.approx(1.0)


def test_append_needs_an_existing_table_and_a_plain_name(wh: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError, match="does not exist"):
        wh.append("nope", _labels(1))
    with pytest.raises(WarehouseError, match="identifier"):
        wh.append("labels; DROP TABLE labels", _labels(1))


def test_transaction_rolls_back_everything_on_error(wh: DuckDBWarehouse) -> None:
    wh.append("labels", _labels(5))
    with pytest.raises(RuntimeError), wh.transaction():
        wh.replace_table("labels", _labels(1))
        wh.execute("INSERT INTO run_watermarks VALUES ('training', 'weekly', now(), 'r', now())")
        raise RuntimeError("boom")
    assert wh.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 5
    assert wh.fetch_df("SELECT count(*) AS n FROM run_watermarks")["n"].iloc[0] == 0


def test_transaction_commits_and_nested_blocks_join_the_outer_one(tmp_path: Path) -> None:
    cfg = WarehouseConfig(path=tmp_path / "wh.duckdb")
    with open_warehouse(cfg) as warehouse:
        warehouse.ensure_schema()
        with warehouse.transaction():
            warehouse.append("labels", _labels(2))
            with warehouse.transaction():
                warehouse.append("labels", _labels(3))
        with pytest.raises(RuntimeError), warehouse.transaction():
            warehouse.append("labels", _labels(7))
            with warehouse.transaction():
                raise RuntimeError("inner failure")
    with open_warehouse(cfg, read_only=True) as warehouse:
        assert warehouse.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 5


def test_copy_query_to_parquet_orders_rows_and_counts_them(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    wh.append("labels", _labels(50).sample(frac=1.0, random_state=1))
    out = tmp_path / "out.parquet"
    n = wh.copy_query_to_parquet(
        "SELECT product_id, label FROM labels WHERE week <= $week -- trailing comment\n;",
        {"week": 1, "unused": 2},
        out,
        order_by=["product_id"],
    )
    table = pq.read_table(out)
    assert n == table.num_rows == 50
    ids = table.column("product_id").to_pylist()
    assert ids == sorted(ids)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    # rows already in key order take the unsorted path: the same trailing comment and semicolon are fine
    wh.execute("CREATE TABLE in_order AS SELECT * FROM labels ORDER BY product_id")
    again = tmp_path / "again.parquet"
    sql = "SELECT product_id, label FROM in_order WHERE week <= $week -- trailing comment\n;"
    assert wh.copy_query_to_parquet(sql, {"week": 1}, again, order_by=["product_id"]) == 50
    assert pq.read_table(again).equals(table)


def test_copy_query_to_parquet_bytes_do_not_depend_on_batch_sizes(
    wh: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh.execute("CREATE TABLE big AS SELECT range AS id, 'v' || (range % 13) AS v, range * 0.5 AS x FROM range(5000)")
    monkeypatch.setattr(duckdb_backend, "PARQUET_ROW_GROUP_ROWS", 1000)
    digests = set()
    for i, batch_rows in enumerate((7, 333, 1000, 4096)):
        monkeypatch.setattr(duckdb_backend, "_READ_BATCH_ROWS", batch_rows)
        out = tmp_path / f"o{i}.parquet"
        assert wh.copy_query_to_parquet("SELECT * FROM big", None, out, ["id"]) == 5000
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
        assert pq.ParquetFile(out).metadata.num_row_groups == 5
    assert len(digests) == 1


def test_a_fast_extract_holds_the_same_rows_in_a_working_file_and_stays_byte_stable(
    wh: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh.execute("CREATE TABLE big AS SELECT 'P' || lpad(range::VARCHAR, 6, '0') AS id, 'v' || (range % 13) AS v, "
               "range * 0.5 AS x FROM range(5000)")  # fmt: skip
    archive = tmp_path / "archive.parquet"
    assert wh.copy_query_to_parquet("SELECT * FROM big", None, archive, ["id"]) == 5000
    digests = set()
    for i, batch_rows in enumerate((333, 4096)):
        monkeypatch.setattr(duckdb_backend, "_READ_BATCH_ROWS", batch_rows)
        out = tmp_path / f"fast{i}.parquet"
        assert wh.copy_query_to_parquet("SELECT * FROM big", None, out, ["id"], fast=True) == 5000
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1  # the same rows, the same bytes: the extract directory stays content-addressed
    assert pq.read_table(out).equals(pq.read_table(archive))
    column = {c: pq.ParquetFile(out).metadata.row_group(0).column(i) for i, c in enumerate(("id", "v", "x"))}
    assert {c.compression for c in column.values()} == {"LZ4"}
    assert column["id"].is_stats_set and not column["x"].is_stats_set
    assert column["v"].has_dictionary_page and not column["id"].has_dictionary_page
    assert pq.ParquetFile(archive).metadata.row_group(0).column(0).compression == "ZSTD"  # snapshots unchanged


def test_copy_query_to_parquet_writes_an_empty_file_with_the_schema(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    assert wh.copy_query_to_parquet("SELECT * FROM labels", None, out, ["product_id"]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 0
    assert table.schema.names == LABELS.column_names


def test_copy_query_to_parquet_failure_leaves_no_file(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(QueryError):
        wh.copy_query_to_parquet("SELECT * FROM labels", None, out, ["no_such_column"])
    failing_late = "SELECT CASE WHEN range < 150000 THEN range ELSE error('feed broken') END AS x FROM range(200000)"
    with pytest.raises(QueryError, match="feed broken"):
        wh.copy_query_to_parquet(failing_late, None, out, ["x"])
    with pytest.raises(QueryError, match="feed broken"):
        wh.copy_query_to_parquet(failing_late, None, out)
    assert list(tmp_path.iterdir()) == []
    # The connection stays usable after a failed stream.
    assert wh.fetch_df("SELECT 1 AS one")["one"].iloc[0] == 1


def test_close_is_idempotent_and_the_context_manager_closes(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb")
    with warehouse:
        pass
    warehouse.close()
    with pytest.raises(Exception):  # noqa: B017 - any use after close fails; which error is DuckDB's
        warehouse.fetch_df("SELECT 1")


def test_helpers() -> None:
    assert referenced_params("SELECT $week, $a_b", {"week": 1, "a_b": 2, "c": 3}) == {"week": 1, "a_b": 2}
    assert referenced_params("SELECT 1", None) == {}
    wrapped = wrap_ordered("SELECT 1 AS a -- note;\n ;", ["a"])
    assert wrapped.endswith("ORDER BY a") and "-- note" in wrapped
    assert wrap_ordered("SELECT 1;", []) == "SELECT 1"
    assert check_identifier("labels") == "labels"
    with pytest.raises(WarehouseError):
        check_identifier("1abc")


def test_an_extract_past_its_memory_limit_spills_into_its_own_directory_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warehouse.duckdb_memory` bounds the extract's sort: ~150 MB of rows under a 64MB limit come out
    whole and ordered; the spill went to this process's temporary directory, never beside the database file
    (which other tasks share), and is gone after the close; the memory limit is back to DuckDB's."""
    private_tmp = tmp_path / "task-tmp"
    private_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(private_tmp))
    db = tmp_path / "shared" / "warehouse.duckdb"
    with DuckDBWarehouse(db) as wh:
        wh.execute(
            "CREATE TABLE big AS SELECT md5(i::VARCHAR) || md5((i + 1)::VARCHAR) AS id, i FROM range(2000000) t(i)"
        )
        default_limit = wh.fetch_df("SELECT current_setting('memory_limit') AS m")["m"].iloc[0]
    with DuckDBWarehouse(db, read_only=True, memory_limit="64MB") as wh:
        out = tmp_path / "extract.parquet"
        assert wh.copy_query_to_parquet("SELECT * FROM big", None, out, ["id"]) == 2_000_000
        settings = wh.fetch_df("SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') AS t")
        assert settings["m"].iloc[0] == default_limit
        spill = Path(settings["t"].iloc[0])
        assert spill.parent == private_tmp and [f.name for f in spill.iterdir()], "the sort did not spill"
    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    assert len(set(ids)) == 2_000_000 and ids == sorted(ids)
    assert sorted(p.name for p in db.parent.iterdir()) == ["warehouse.duckdb"]
    assert list(private_tmp.iterdir()) == []


def test_a_bad_duckdb_memory_setting_is_one_clear_error_and_the_former_name_is_still_read() -> None:
    with pytest.raises(ValueError, match=r"'lots' is not a memory size: use e\.g\. 256MB or 1GB"):
        WarehouseConfig(duckdb_memory="lots")
    with pytest.raises(ValueError, match=r"'lots' is not a memory size"):
        WarehouseConfig(duckdb_extract_memory="lots")
    assert WarehouseConfig(duckdb_extract_memory="1GB").duckdb_memory == "1GB"  # a config from before the rename
    assert WarehouseConfig.model_validate(WarehouseConfig(duckdb_memory=None).model_dump()).duckdb_memory is None


def test_an_extract_that_cannot_fit_even_spilling_names_the_setting_to_raise(tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(db) as wh:
        wh.execute("CREATE TABLE big AS SELECT md5(i::VARCHAR) AS id FROM range(500000) t(i)")
    out = tmp_path / "extract.parquet"
    with (
        DuckDBWarehouse(db, read_only=True, memory_limit="4MB") as wh,
        pytest.raises(WarehouseMemoryError, match=r"raise it$") as err,
    ):
        wh.copy_query_to_parquet("SELECT * FROM big", None, out, ["id"])
    assert "the extract needs more than warehouse.duckdb_memory (4MB)" in str(err.value)
    assert not out.exists()


def test_an_extract_of_rows_stored_in_key_order_skips_the_sort_and_gives_the_sorted_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table stored in product id order (an inventory appended in id order) streams straight out, in the
    memory of a batch (4MB, where the sort of the same rows needs more), with the very bytes of the same
    rows sorted; rows out of order anywhere (the last one, a tie, a null, or a scan that disagrees with the
    check before it) are sorted as before. The extract directory stays content-addressed either way."""
    monkeypatch.setattr(duckdb_backend, "PARQUET_ROW_GROUP_ROWS", 50_000)
    db = tmp_path / "warehouse.duckdb"
    rows = "SELECT md5(i::VARCHAR) AS id, i, 'v' || (i % 7) AS v FROM range(300000) t(i)"
    with DuckDBWarehouse(db) as wh:
        wh.execute(f"CREATE TABLE stored AS SELECT * FROM ({rows}) ORDER BY id")
        wh.execute(f"CREATE TABLE shuffled AS SELECT * FROM ({rows}) ORDER BY i")  # md5 order is not i's
        wh.execute("CREATE TABLE last_late AS SELECT * FROM stored ORDER BY id = (SELECT min(id) FROM stored), id")
        wh.execute("CREATE TABLE tied AS SELECT * FROM stored UNION ALL SELECT * FROM stored WHERE i = 7")
        wh.execute("CREATE TABLE with_null AS SELECT * FROM stored UNION ALL SELECT NULL, -1, 'v'")
    with DuckDBWarehouse(db, read_only=True) as wh:
        sorted_bytes = {}
        for name in ("stored", "shuffled", "last_late"):
            out = tmp_path / f"{name}.parquet"
            assert wh.copy_query_to_parquet(f"SELECT * FROM {name}", None, out, ["id"], fast=True) == 300_000
            sorted_bytes[name] = out.read_bytes()
        assert len(set(sorted_bytes.values())) == 1
        for name, n in (("tied", 300_001), ("with_null", 300_001)):
            out = tmp_path / f"{name}.parquet"
            assert wh.copy_query_to_parquet(f"SELECT * FROM {name}", None, out, ["id"], fast=True) == n
            ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
            assert ids[:-1] == sorted(ids[:-1]) and (ids[-1] is None if name == "with_null" else ids == sorted(ids))
        # the check while writing, when the scan disagrees with the check before it: sorted all the same
        with monkeypatch.context() as patched:
            patched.setattr(DuckDBWarehouse, "_comes_in_order", lambda *args: True)
            out = tmp_path / "disagrees.parquet"
            assert wh.copy_query_to_parquet("SELECT * FROM shuffled", None, out, ["id"], fast=True) == 300_000
        assert out.read_bytes() == sorted_bytes["stored"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with DuckDBWarehouse(db, read_only=True, memory_limit="4MB") as wh:
        wh.copy_query_to_parquet("SELECT * FROM stored", None, tmp_path / "small.parquet", ["id"], fast=True)
        with pytest.raises(WarehouseMemoryError, match=r"the extract needs more than warehouse\.duckdb_memory"):
            wh.copy_query_to_parquet("SELECT * FROM shuffled", None, tmp_path / "x.parquet", ["id"], fast=True)
    assert (tmp_path / "small.parquet").read_bytes() == sorted_bytes["stored"]
