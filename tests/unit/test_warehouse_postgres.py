"""The PostgreSQL warehouse against a real server: the protocol, streamed extracts, the exactly-once load
with a failure injected at every write inside its transaction, and the one-line errors for bad input."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from packwise.config import WarehouseConfig
from packwise.errors import WarehouseError
from packwise.prediction_ledger import predictions_columns
from packwise.predictions import PREDICTION_RUNS, PREDICTIONS, current_predictions, read_watermark
from packwise.snapshot import extract_snapshot
from packwise.warehouse import QueryError, Warehouse, open_warehouse
from packwise.warehouse.duckdb import DuckDBWarehouse
from packwise.warehouse.postgres import PostgresWarehouse, bind_positional
from tests.postgres_server import PostgresServer
from tests.unit.test_inference_loader import TYPES, _ids, _load, scored_file
from tests.unit.test_warehouse import _labels


@pytest.fixture
def pg(postgres_dsn_env: str) -> Any:
    with open_warehouse(WarehouseConfig(backend="postgres", dsn_env=postgres_dsn_env)) as warehouse:
        warehouse.ensure_schema()
        yield warehouse


def _table(wh: Any) -> pd.DataFrame:
    return wh.fetch_df(f"SELECT * FROM {PREDICTIONS} ORDER BY product_id, run_id").reset_index(drop=True)


def _stages(wh: Any) -> list[str]:
    found = wh.fetch_df("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'prediction_stage%'")
    return list(found["table_name"])


def test_open_warehouse_gives_a_postgres_backend_satisfying_the_protocol(pg: Any) -> None:
    assert isinstance(pg, PostgresWarehouse) and isinstance(pg, Warehouse)
    pg.append("labels", _labels(3))
    assert pg.fetch_df("SELECT count(*) AS n FROM labels WHERE week = $week", {"week": 1})["n"].iloc[0] == 3


def test_named_params_become_positional_and_none_becomes_null() -> None:
    sql, values = bind_positional("SELECT $a, $b, $a, $c", {"a": 1, "b": None, "c": "x", "unused": 2})
    assert sql == "SELECT $1, NULL, $1, $2" and values == (1, "x")
    with pytest.raises(QueryError, match=r"\$missing"):
        bind_positional("SELECT $missing", {})


def test_transaction_rolls_back_everything_and_nested_blocks_join(pg: Any) -> None:
    with pytest.raises(RuntimeError), pg.transaction():
        pg.append("labels", _labels(2))
        with pg.transaction():
            pg.execute("DELETE FROM labels")
            pg.append("labels", _labels(5))
        raise RuntimeError("boom")
    assert pg.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 0
    with pg.transaction():
        pg.append("labels", _labels(4))
    assert pg.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 4


def test_a_stream_of_batches_is_appended_whole_or_not_at_all(pg: Any) -> None:
    import pyarrow as pa

    from packwise.warehouse import BatchAppender
    from packwise.warehouse.postgres import COPY_BATCH_ROWS

    assert isinstance(pg, BatchAppender)
    rows = pa.Table.from_pandas(_labels(2 * COPY_BATCH_ROWS + 7), preserve_index=False)
    # label as int64 and week as int64: cast batch by batch to the table's declared widths
    assert pg.append_batches("labels", rows.schema, iter(rows.to_batches(max_chunksize=40_000))) == rows.num_rows
    got = pg.fetch_df("SELECT count(*) AS n, count(DISTINCT product_id) AS d, sum(label) AS s FROM labels")
    assert got.iloc[0].tolist() == [rows.num_rows, rows.num_rows, sum(i % 2 for i in range(rows.num_rows))]

    texts = rows.schema.set(2, pa.field("label", pa.string()))

    def broken() -> Any:
        good = _labels(COPY_BATCH_ROWS + 1).assign(label="1")  # text that casts to the column's integers
        yield pa.RecordBatch.from_pandas(good, preserve_index=False, schema=texts)
        bad = _labels(3).assign(label=["x", "y", "z"])  # and a label that is no number, after it
        yield pa.RecordBatch.from_pandas(bad, preserve_index=False, schema=texts)

    with pytest.raises(WarehouseError, match=r"labels\.label is int\d+, the rows hold string"), pg.transaction():
        pg.execute("DELETE FROM labels")
        pg.append_batches("labels", texts, broken())
    assert pg.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == rows.num_rows  # the DELETE rolled back
    pg.append("labels", _labels(1))  # the connection is usable after the aborted COPY
    assert pg.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == rows.num_rows + 1


def test_a_column_the_batches_lack_takes_its_default_or_null(pg: Any) -> None:
    """Absent columns are left out of the COPY, so the server fills them as an INSERT would: the column's
    DEFAULT, else NULL (a monthly load sends a run's constants as the next table's defaults)."""
    import pyarrow as pa

    pg.execute("DROP TABLE IF EXISTS defaults_t")
    pg.execute("CREATE TABLE defaults_t (a INTEGER, b VARCHAR DEFAULT 'it''s set', c INTEGER, d BIGINT DEFAULT 7)")
    rows = pa.table({"d": pa.array([1, 2], pa.int64()), "a": pa.array([10, 20], pa.int64())})  # not table order
    assert pg.append_batches("defaults_t", rows.schema, iter(rows.to_batches())) == 2
    got = pg.fetch_df("SELECT a, b, c, d FROM defaults_t ORDER BY a")
    rows_got = got.astype(object).where(got.notna(), None).values.tolist()
    assert rows_got == [[10, "it's set", None, 1], [20, "it's set", None, 2]]
    pg.execute("DROP TABLE defaults_t")


def test_replace_table_replaces_every_row_and_creates_a_missing_table(pg: Any) -> None:
    pg.append("labels", _labels(5))
    assert pg.replace_table("labels", _labels(2)) == 2
    assert pg.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == 2
    pg.replace_table("extra", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert pg.fetch_df("SELECT b FROM extra ORDER BY a")["b"].tolist() == ["x", "y"]


def test_read_only_refuses_writes(pg: Any, postgres_dsn_env: str) -> None:
    with open_warehouse(WarehouseConfig(backend="postgres", dsn_env=postgres_dsn_env), read_only=True) as ro:
        assert ro.table_exists("labels")
        with pytest.raises(QueryError, match="read-only"):
            ro.execute("DELETE FROM labels")


def test_extract_gives_the_same_parquet_bytes_as_duckdb(pg: Any, tmp_path: Path) -> None:
    labels = _labels(3_000)
    pg.append("labels", labels)
    with DuckDBWarehouse(":memory:") as duck:
        duck.ensure_schema()
        duck.append("labels", labels)
        n_duck = duck.copy_query_to_parquet("SELECT * FROM labels", None, tmp_path / "d.parquet", ["product_id"])
    n_pg = pg.copy_query_to_parquet(
        "SELECT * FROM labels WHERE week <= $week", {"week": 1}, tmp_path / "p.parquet", ["product_id"]
    )
    assert n_pg == n_duck == 3_000
    assert pq.read_table(tmp_path / "p.parquet").equals(pq.read_table(tmp_path / "d.parquet"))
    assert (tmp_path / "p.parquet").read_bytes() == (tmp_path / "d.parquet").read_bytes()


def test_snapshot_extract_from_postgres(pg: Any, postgres_dsn_env: str, config_factory: Any) -> None:
    from tests.conftest import seed

    duck_cfg = config_factory()
    seed(duck_cfg, n_products=300, weeks=2)
    with open_warehouse(duck_cfg.warehouse) as duck:
        for name in ("products", "labels"):
            pg.append(name, duck.fetch_df(f"SELECT * FROM {name}"))
    # the default queries, unchanged: the same config runs on DuckDB and PostgreSQL (no QUALIFY)
    cfg = config_factory(warehouse={"backend": "postgres", "dsn_env": postgres_dsn_env})
    info = extract_snapshot(cfg, week=2)
    duck_info = extract_snapshot(duck_cfg.model_copy(update={"storage": cfg.storage}), week=2)
    assert info.n_products > 0 and info.fingerprint == duck_info.fingerprint


def test_exactly_once_load_supersedes_and_moves_the_watermark(pg: Any, tmp_path: Path) -> None:
    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 1_000), 1)], "run-1")
    result = _load(pg, [scored_file(tmp_path / "b.parquet", _ids(501, 1_000), 2)], "run-2")
    assert result.loaded and result.superseded == 500
    again = _load(pg, [scored_file(tmp_path / "b.parquet", _ids(501, 1_000), 2)], "run-2")
    assert not again.loaded
    current = current_predictions(pg)
    assert len(current) == 1_500 and current["product_id"].is_unique
    assert current.groupby("run_id").size().to_dict() == {"run-1": 500, "run-2": 1_000}
    assert read_watermark(pg, "monthly") == datetime(2026, 2, 1)
    assert _stages(pg) == []


def test_a_load_stores_the_rows_duckdb_stores(pg: Any, tmp_path: Path) -> None:
    # PostgreSQL stages only the columns that vary by row and writes the run's constants in its INSERT:
    # every column of every row must still be what DuckDB's direct insert stores, to the bit.
    first = scored_file(tmp_path / "a.parquet", _ids(1, 1_500), 5)
    files = [first, scored_file(tmp_path / "b.parquet", _ids(1_501, 7), 7)]
    versions = {t: 3 + i for i, t in enumerate(TYPES)}
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        for wh in (pg, duck):
            _load(wh, files[:1], "run-1", versions={t: 1 for t in TYPES})
            _load(wh, files, "run-2", mode="daily", versions=versions)
        expected = _table(duck)
    finally:
        duck.close()
    got = _table(pg)
    assert len(got) == 3_007 and got["is_current"].sum() == 1_507
    assert set(got.loc[got["is_current"], "run_id"]) == {"run-2"}
    run_2 = got[got["run_id"] == "run-2"]
    assert set(run_2["mode"]) == {"daily"}
    assert run_2[[f"model_version_{t}" for t in TYPES]].drop_duplicates().values.tolist() == [[3, 4, 5, 6]]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


def _history_children(wh: Any) -> dict[str, dict[str, int]]:
    """Each table inheriting predictions_history, named by the run whose swap left it: its rows per run."""
    from packwise.prediction_tables import history_table

    names = wh.fetch_df(
        "SELECT c.relname AS child FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST('predictions_history' AS regclass)"
    )["child"]
    by_run = {history_table(r): r for r in [*(f"run-{i}" for i in range(9)), "run-4 o'clock"]}
    out = {}
    for child in names:
        rows = wh.fetch_df(f"SELECT run_id, count(*) AS n FROM {child} GROUP BY run_id ORDER BY run_id")
        out[by_run[child]] = dict(zip(rows["run_id"], rows["n"].astype(int), strict=True))
    return out


def test_a_monthly_run_swaps_the_current_table_and_retention_drops_whole_history_tables(
    pg: Any, tmp_path: Path
) -> None:
    """PostgreSQL's predictions are a view of a current table and its history. A monthly run's rows become a
    new current table and the old one a history child (no row rewritten); a daily run supersedes in place;
    retention drops a child whose runs are all outside keep_runs. Every step leaves exactly the rows the one
    table of DuckDB holds, and an index a user put on the current table is on every new one."""
    ids, gone, new = _ids(1, 200), _ids(9_000, 5), _ids(20_000, 30)  # gone: scored by run-0 only
    steps = [
        ("run-0", ids + gone, "monthly"),
        ("run-1", ids, "monthly"),
        ("run-2", ids[:50] + new, "daily"),
        ("run-3", ids, "monthly"),
        ("run-4 o'clock", ids + new + gone, "monthly"),  # a quote: the run id is a column default while staged
    ]
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        for i, (run_id, products, mode) in enumerate(steps):
            files = [scored_file(tmp_path / f"{run_id}.parquet", products, i)]
            results = [_load(wh, files, run_id, mode=mode, keep_runs=2) for wh in (pg, duck)]
            assert [(r.n_products, r.superseded, r.pruned) for r in results] == [
                (results[1].n_products, results[1].superseded, results[1].pruned)
            ] * 2
            pd.testing.assert_frame_equal(_table(pg), _table(duck), check_dtype=False, check_exact=True)
            if run_id == "run-0":
                assert pg.fetch_df(
                    "SELECT table_type FROM information_schema.tables WHERE table_name = 'predictions'"
                )["table_type"].tolist() == ["VIEW"]
                assert _history_children(pg) == {}  # the first swap replaced an empty table: dropped
                pg.execute("CREATE INDEX lookups ON predictions_current (product_id)")
            if run_id == "run-1":  # run-0's rows, but for the gone products' (still current), are history
                assert _history_children(pg) == {"run-1": {"run-0": 200}}
            if run_id == "run-2":  # 50 rows superseded in place, in predictions_history itself
                assert results[0].superseded == 50 and _history_children(pg) == {"run-1": {"run-0": 200}}
            if run_id == "run-3":  # monthly runs 1 and 3 and daily run 2 are kept: run-0's child goes whole
                assert results[0].pruned == 200
                assert _history_children(pg) == {"run-3": {"run-1": 150, "run-2": 50}}
    finally:
        duck.close()
    # run-4 keeps monthly runs 3 and 4 (and daily 2): run-1's rows go from predictions_history (50) and from
    # run-3's child (150), and run-0's gone rows, superseded at last, from run-4's own child (5)
    assert results[0].superseded == 235 and results[0].pruned == 50 + 150 + 5
    assert _history_children(pg) == {"run-3": {"run-2": 50}, "run-4 o'clock": {"run-2": 30, "run-3": 200}}
    defaults = pg.fetch_df(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'predictions_current' "
        "AND column_default IS NOT NULL"
    )
    assert defaults.empty  # the run's constants were defaults only while its rows were copied in
    indexed = pg.fetch_df("SELECT indexdef FROM pg_indexes WHERE tablename = 'predictions_current'")["indexdef"]
    assert [d for d in indexed if "(product_id)" in d]  # the user's index, on the table run-4 made current
    with pg._con.cursor() as cur:  # EXPLAIN is no query the driver's COPY can wrap
        cur.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
        cur.execute(f"EXPLAIN SELECT * FROM {PREDICTIONS} WHERE is_current")
        plan = " ".join(row[0] for row in cur.fetchall())
    pg._con.rollback()
    assert "predictions_current" in plan and "history" not in plan  # current rows are read without the history


def _scored_types(path: Path, ids: list[str], types: list[str], seed: int) -> Path:
    import numpy as np
    import pyarrow as pa

    from packwise.scoring import output_schema

    rng = np.random.default_rng(seed)
    arrays = [pa.array(ids, pa.string())] + [pa.array(rng.random(len(ids)).astype(np.float32)) for _ in types]
    recommended = rng.integers(0, len(types), len(ids)).astype(np.int32)
    arrays.append(pa.DictionaryArray.from_arrays(pa.array(recommended), pa.array(types)))
    pq.write_table(pa.Table.from_arrays(arrays, schema=output_schema(types)), path)
    return path


def test_a_package_type_added_then_dropped_keeps_both_layouts_alike(pg: Any, tmp_path: Path) -> None:
    """A type added to the configuration adds its columns (to the view's end on PostgreSQL, to both tables
    and the history tables inheriting them); a run without it leaves them NULL. PostgreSQL's view and
    DuckDB's table hold the same rows and columns, in the same order, after every step."""
    more = [*TYPES, "crate"]
    steps = [("run-1", TYPES, "monthly"), ("run-2", more, "monthly"), ("run-3", TYPES, "daily")]
    steps.append(("run-4", TYPES, "monthly"))  # crate's columns are in the current table: NULL in its rows
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    try:
        for i, (run_id, types, mode) in enumerate(steps):
            ids = _ids(1, 120) if mode == "monthly" else _ids(100, 40)
            files = [_scored_types(tmp_path / f"{run_id}.parquet", ids, types, i)]
            versions = dict.fromkeys(types, i + 1)
            for wh in (pg, duck):
                _load(wh, files, run_id, mode=mode, package_types=types, versions=versions)
            got, expected = _table(pg), _table(duck)
            pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)
    finally:
        duck.close()
    assert list(got.columns[-3:]) == ["is_current", "prob_crate", "model_version_crate"]
    assert got.loc[got["run_id"] == "run-2", "model_version_crate"].eq(2).all()
    assert got.loc[got["run_id"] != "run-2", "prob_crate"].isna().all()
    assert set(got.loc[got["is_current"], "run_id"]) == {"run-4", "run-3"}  # run-3's new products stay current


def test_loads_at_the_same_time_wait_for_each_other(pg: Any, postgres_dsn_env: str, tmp_path: Path) -> None:
    """A daily load during a monthly one (two processes, overlapping products) waits for the other's commit:
    every product ends with exactly one current row, and both runs are in the ledger."""
    import threading

    config = WarehouseConfig(backend="postgres", dsn_env=postgres_dsn_env)
    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)], "run-1")
    runs = [("run-2", _ids(1, 300), "monthly"), ("run-3", _ids(250, 100), "daily")]
    errors: list[BaseException] = []

    def load(run_id: str, ids: list[str], mode: str) -> None:
        try:
            with open_warehouse(config) as wh:
                _load(wh, [scored_file(tmp_path / f"{run_id}.parquet", ids, 2)], run_id, mode=mode)
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=load, args=run) for run in runs]
    with pg.transaction():
        pg.lock_loads()  # as a load in its transaction would
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=1.0)
        assert all(t.is_alive() for t in threads)  # both wait for the lock
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    current = current_predictions(pg)
    assert len(current) == 349 and current["product_id"].is_unique
    assert sorted(pg.fetch_df(f"SELECT run_id FROM {PREDICTION_RUNS}")["run_id"]) == ["run-1", "run-2", "run-3"]
    assert len(_table(pg)) == 300 + 300 + 100  # every run's rows, each superseded row once


def test_migrate_predictions_moves_an_earlier_releases_table_keeping_every_row(
    pg: Any, postgres_dsn_env: str, tmp_path: Path
) -> None:
    """`packwise migrate-predictions` turns the one table of an earlier release into the view of a current
    table and its history: the same rows, columns and is_current; the next loads swap and prune as on a new
    warehouse. A dry run changes nothing; a second run and DuckDB have nothing to migrate."""
    from typer.testing import CliRunner

    from packwise_app.cli import app

    _earlier_release_table(pg)
    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)], "run-1", keep_runs=2)
    _load(pg, [scored_file(tmp_path / "b.parquet", _ids(101, 300), 2)], "run-2", mode="daily", keep_runs=2)
    before = _table(pg)

    def cli(*args: str, backend: str = "postgres") -> str:
        sets = ["--set", f"warehouse.backend={backend}", "--set", f"warehouse.dsn_env={postgres_dsn_env}"]
        sets += ["--set", f"warehouse.path={tmp_path / 'w.duckdb'}", "--set", f"storage.root={tmp_path / 'state'}"]
        result = CliRunner().invoke(app, ["migrate-predictions", *sets, *args])
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert cli("--dry-run") == "would move 400 current and 200 superseded rows"
    assert _keys(pg) == [f"{PREDICTIONS}_pkey"]  # still the one table
    assert cli() == (
        "moved 400 current rows to predictions_current and 200 superseded rows to predictions_history; "
        "predictions is now a view of both"
    )
    pd.testing.assert_frame_equal(_table(pg), before, check_exact=True)
    assert cli().startswith("nothing to migrate: predictions is already a view")
    assert cli(backend="duckdb") == "nothing to migrate: the duckdb warehouse keeps predictions in one table"

    result = _load(pg, [scored_file(tmp_path / "c.parquet", _ids(1, 400), 3)], "run-3", keep_runs=1)
    # run-1 falls outside keep_runs=1: its 200 migrated history rows (predictions_history) and the 100 run-3
    # superseded (the history table run-3 left) go; daily run-2's stay, the newest of its mode
    assert result.superseded == 400 and result.pruned == 200 + 100
    assert _history_children(pg) == {"run-3": {"run-2": 300}}
    assert len(current_predictions(pg)) == 400 and set(current_predictions(pg)["run_id"]) == {"run-3"}


def test_migrate_refuses_a_table_with_two_current_rows_of_a_product_and_changes_nothing(pg: Any) -> None:
    from packwise.prediction_tables import migrate

    _earlier_release_table(pg, keyed=False)
    for run_id in ("run-1", "run-2"):
        pg.execute(f"INSERT INTO {PREDICTIONS} (product_id, run_id, is_current) VALUES ('P1', '{run_id}', TRUE)")
    before = _table(pg)
    with pytest.raises(WarehouseError) as info:
        migrate(pg)
    assert str(info.value) == (
        "migrate: predictions holds 2 current rows of 1 products and 0 rows without is_current; fix them first "
        "(nothing changed)"
    )
    pd.testing.assert_frame_equal(_table(pg), before)
    assert not pg.table_exists("predictions_current") and _keys(pg) == []


def _keys(wh: Any, table: str = PREDICTIONS) -> list[str]:
    found = wh.fetch_df(
        "SELECT constraint_name FROM information_schema.table_constraints "
        f"WHERE table_name = '{table}' AND constraint_type = 'PRIMARY KEY'"
    )
    return list(found["constraint_name"])


def _earlier_release_table(wh: Any, keyed: bool = True) -> None:
    """The one predictions table an earlier release created (with or without its key)."""
    columns = ", ".join(f"{c} {t}" for c, t in predictions_columns(TYPES))
    key = ", PRIMARY KEY (product_id, run_id)" if keyed else ""
    wh.execute(f"CREATE TABLE {PREDICTIONS} ({columns}{key})")


def _drop_predictions(wh: Any) -> None:
    """Drops the predictions view, its tables and the history's children (CASCADE)."""
    wh.execute(f"DROP VIEW {PREDICTIONS}")
    wh.execute("DROP TABLE predictions_current, prediction_history_tables")
    wh.execute("DROP TABLE predictions_history CASCADE")


def test_predictions_get_no_key_index_and_a_table_keyed_before_still_loads(pg: Any, tmp_path: Path) -> None:
    """A key on (product_id, run_id) is an index PostgreSQL updates row by row (a monthly load's UPDATE and
    INSERT took 2.5x as long with it), and the load already guarantees it: a new table gets none. A table an
    earlier release created with the key keeps it and loads the same way."""
    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)], "run-1")
    assert _keys(pg) == [] and _keys(pg, "predictions_current") == [] and _keys(pg, "predictions_history") == []
    unkeyed = _table(pg)
    _drop_predictions(pg)
    pg.execute(f"DELETE FROM {PREDICTION_RUNS}")
    pg.execute("DELETE FROM run_watermarks")
    _earlier_release_table(pg)
    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)], "run-1")
    result = _load(pg, [scored_file(tmp_path / "b.parquet", _ids(101, 300), 2)], "run-2")
    assert _keys(pg) == [f"{PREDICTIONS}_pkey"] and result.superseded == 200
    first_run = _table(pg).query("run_id == 'run-1'").reset_index(drop=True)
    pd.testing.assert_frame_equal(first_run, unkeyed.assign(is_current=[i < 100 for i in range(300)]))
    assert current_predictions(pg)["product_id"].is_unique


class _FailingAt:
    """Wraps a warehouse so that its `n`-th write (execute or append) raises, as a crash there would."""

    def __init__(self, inner: Any, n: int) -> None:
        self._inner, self._n, self.writes = inner, n, 0

    def _count(self) -> None:
        self.writes += 1
        if self.writes == self._n:
            raise ConnectionError(f"injected failure at write {self._n}")

    def execute(self, sql: str, params: Any = None) -> None:
        self._count()
        self._inner.execute(sql, params)

    def execute_count(self, sql: str, params: Any = None) -> int:
        self._count()
        return int(self._inner.execute_count(sql, params))

    def append(self, name: str, data: Any) -> int:
        self._count()
        return int(self._inner.append(name, data))

    def append_batches(self, name: str, schema: Any, batches: Any) -> int:
        self._count()
        return int(self._inner.append_batches(name, schema, batches))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _UndoError(Exception):
    pass


@pytest.mark.parametrize("mode", ["daily", "monthly"])  # in place / the current table swapped
def test_a_load_failing_at_any_write_leaves_the_previous_predictions_and_watermark(
    pg: Any, tmp_path: Path, mode: str
) -> None:
    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)], "run-1", mode=mode)
    before = _table(pg)
    files = [scored_file(tmp_path / "b.parquet", _ids(151, 300), 2)]
    counter = _FailingAt(pg, 0)
    with pytest.raises(_UndoError), pg.transaction():  # the load joins this transaction, which rolls it back
        _load(counter, files, "dry-run", mode=mode)  # counts the writes one load makes
        raise _UndoError
    pd.testing.assert_frame_equal(_table(pg), before)
    assert counter.writes >= 8
    for n in range(1, counter.writes + 1):
        with pytest.raises(ConnectionError):
            _load(_FailingAt(pg, n), files, "run-2", mode=mode, watermark=datetime(2026, 3, 1))
        pd.testing.assert_frame_equal(_table(pg), before)
        assert pg.fetch_df(f"SELECT run_id FROM {PREDICTION_RUNS}")["run_id"].tolist() == ["run-1"]
        assert read_watermark(pg, mode) == datetime(2026, 2, 1)
        assert _stages(pg) == [] and not pg.table_exists("predictions_current_next")
    _load(pg, files, "run-2", mode=mode, watermark=datetime(2026, 3, 1))
    assert read_watermark(pg, mode) == datetime(2026, 3, 1)
    assert len(current_predictions(pg)) == 450


@pytest.mark.parametrize("mode", ["monthly", "daily"])
def test_scored_rows_out_of_id_order_are_still_checked_for_duplicates(pg: Any, tmp_path: Path, mode: str) -> None:
    """The row check trusts ids that came strictly increasing (shards of an extract ordered by product id) and
    counts distinct products in SQL otherwise: files in any order load, a duplicate anywhere is refused."""
    low = scored_file(tmp_path / "low.parquet", _ids(1, 100), 1)
    high = scored_file(tmp_path / "high.parquet", _ids(101, 50), 2)
    _load(pg, [high, low], "run-1", mode=mode)  # distinct, not in order: counted in SQL, loaded
    assert sorted(current_predictions(pg)["product_id"]) == _ids(1, 150)
    before = _table(pg)
    shuffled = _ids(200, 20)
    shuffled[3], shuffled[11] = shuffled[11], shuffled[3]
    twice = [
        [scored_file(tmp_path / "a.parquet", _ids(300, 40), 3), scored_file(tmp_path / "b.parquet", _ids(339, 5), 4)],
        [scored_file(tmp_path / "c.parquet", [*shuffled, shuffled[0]], 5)],  # out of order, then a repeat
        [scored_file(tmp_path / "d.parquet", _ids(400, 10), 6), scored_file(tmp_path / "e.parquet", _ids(405, 3), 7)],
    ]
    for files in twice:
        with pytest.raises(WarehouseError, match=r"distinct products\), expected"):
            _load(pg, files, "run-2", mode=mode)
        pd.testing.assert_frame_equal(_table(pg), before)
        assert _stages(pg) == [] and not pg.table_exists("predictions_current_next")


# -- bad input: one line, names the backend and the fix, nothing written -----------------------------


def test_an_unset_dsn_variable_says_which_to_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PACKWISE_NO_SUCH_DSN", raising=False)
    with pytest.raises(WarehouseError, match=r"postgres warehouse: .*\$PACKWISE_NO_SUCH_DSN.*export it") as info:
        open_warehouse(WarehouseConfig(backend="postgres", dsn_env="PACKWISE_NO_SUCH_DSN"))
    assert "\n" not in str(info.value)


def test_a_dsn_value_in_the_config_is_refused() -> None:
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        WarehouseConfig(backend="postgres", dsn_env="postgresql://u:secret@db/x")


def test_an_unreachable_server_is_one_line_naming_backend_and_fix(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, config_factory: Any
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("PACKWISE_DOWN_DSN", f"postgresql://postgres:x@127.0.0.1:{port}/postgres")
    cfg = config_factory(warehouse={"backend": "postgres", "dsn_env": "PACKWISE_DOWN_DSN"})
    with pytest.raises(WarehouseError) as info:
        extract_snapshot(cfg, week=1)
    message = str(info.value)
    assert message.startswith("postgres warehouse: cannot reach the server at 127.0.0.1:")
    assert "start it, or fix the host/port in the DSN in $PACKWISE_DOWN_DSN" in message and "\n" not in message
    assert not cfg.storage.snapshots.exists()


def test_a_wrong_password_is_one_line_naming_backend_and_fix(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACKWISE_BAD_DSN", postgres.dsn(password="wrong"))
    with pytest.raises(WarehouseError) as info:
        open_warehouse(WarehouseConfig(backend="postgres", dsn_env="PACKWISE_BAD_DSN"))
    message = str(info.value)
    assert message.startswith('postgres warehouse: password authentication failed for user "postgres"')
    assert message.endswith("fix the user or password in the DSN held by $PACKWISE_BAD_DSN") and "\n" not in message
    assert "wrong" not in message  # the secret never reaches a log


def test_a_missing_table_is_one_line_and_leaves_no_snapshot(postgres_dsn_env: str, config_factory: Any) -> None:
    cfg = config_factory(warehouse={"backend": "postgres", "dsn_env": postgres_dsn_env})
    with pytest.raises(WarehouseError) as info:
        extract_snapshot(cfg, week=1)
    message = str(info.value)
    assert 'postgres: relation "products" does not exist' in message and "\n" not in message
    assert "fix warehouse.products_query" in message
    assert not list(cfg.storage.snapshots.glob("*")) if cfg.storage.snapshots.exists() else True


def test_append_to_a_missing_table_writes_nothing(postgres_dsn_env: str) -> None:
    with open_warehouse(WarehouseConfig(backend="postgres", dsn_env=postgres_dsn_env)) as wh:
        with pytest.raises(WarehouseError, match="postgres warehouse: table labels does not exist; run `packwise seed`"):  # noqa: E501
            wh.append("labels", _labels(2))
        assert not wh.table_exists("labels")
    assert os.environ[postgres_dsn_env]


def test_a_load_killed_before_its_commit_leaves_the_server_as_it_was(
    pg: Any, postgres_dsn_env: str, tmp_path: Path
) -> None:
    """kill -9 inside the transaction (everything written, nothing committed): the server rolls back."""
    import subprocess
    import sys
    import textwrap

    _load(pg, [scored_file(tmp_path / "a.parquet", _ids(1, 400), 1)], "run-1")
    before = _table(pg)
    second = scored_file(tmp_path / "b.parquet", _ids(201, 400), 2)
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        import packwise.faults
        from packwise.warehouse.postgres import PostgresWarehouse
        from tests.unit.test_inference_loader import _load

        def die(task, package_type=None):
            if (task, package_type) == ("load-predictions", "commit"):
                os._exit(9)  # no rollback, no close: as if killed
        packwise.faults.maybe_fail = die
        _load(PostgresWarehouse({postgres_dsn_env!r}), [Path({str(second)!r})], "run-2")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    pd.testing.assert_frame_equal(_table(pg), before)
    assert read_watermark(pg, "monthly") == datetime(2026, 2, 1)
    _load(pg, [second], "run-2")
    current = current_predictions(pg)
    assert len(current) == 600 and current.groupby("run_id").size().to_dict() == {"run-1": 200, "run-2": 400}


def test_the_compiled_pipelines_hold_the_variable_name_never_the_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from packwise_app.cli import app

    secret = "postgresql://packwise:s3cret-value@db.internal:5432/analytics"
    monkeypatch.setenv("PACKWISE_WAREHOUSE_DSN", secret)
    result = CliRunner().invoke(
        app,
        ["compile", "--out", str(tmp_path), "--set", "warehouse.backend=postgres",
         "--set", "warehouse.dsn_env=PACKWISE_WAREHOUSE_DSN"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    irs = [p.read_text() for p in tmp_path.glob("*.yaml")]
    assert len(irs) >= 2
    assert all("s3cret-value" not in ir and "db.internal" not in ir for ir in irs)
    assert all("PACKWISE_WAREHOUSE_DSN" in ir for ir in irs)
