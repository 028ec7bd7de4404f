"""The exactly-once loader: one current row per product, idempotent per run id, all or nothing, watermarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.errors import InjectedFault, WarehouseError
from packwise.predictions import (
    PREDICTION_RUNS,
    PREDICTIONS,
    current_predictions,
    daily_since,
    load_predictions,
    read_watermark,
)
from packwise.scoring import output_schema
from packwise.warehouse import open_warehouse
from packwise.warehouse.duckdb import DuckDBWarehouse

TYPES = ["own_container", "bag", "mailer", "box"]
V1 = {"own_container": 1, "bag": 1, "mailer": 1, "box": 1}
V2 = {"own_container": 2, "bag": 1, "mailer": 3, "box": 2}


def scored_file(path: Path, ids: list[str], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    prob = rng.random((len(ids), len(TYPES))).astype(np.float32)
    rec = rng.integers(0, len(TYPES), len(ids)).astype(np.int32)
    arrays = [pa.array(ids, pa.string())] + [pa.array(prob[:, j]) for j in range(len(TYPES))]
    arrays.append(pa.DictionaryArray.from_arrays(pa.array(rec), pa.array(TYPES)))
    pq.write_table(pa.Table.from_arrays(arrays, schema=output_schema(TYPES)), path)
    return path


def _ids(start: int, n: int) -> list[str]:
    return [f"P{i:07d}" for i in range(start, start + n)]


def _load(wh: Any, files: list[Path], run_id: str, mode: str = "monthly", **kw: Any) -> Any:
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    args: dict[str, Any] = {
        "run_id": run_id,
        "mode": mode,
        "package_types": TYPES,
        "versions": V1,
        "expected_rows": n,
        "since": None,
        "watermark": datetime(2026, 2, 1),
        "recommended": {"box": n},
        "unseen": {"category": 0},
        "batch_rows": 1_000,
    }
    args.update(kw)
    return load_predictions(wh, files, **args)


def table(wh: Any) -> pd.DataFrame:
    return wh.fetch_df(f"SELECT * FROM {PREDICTIONS} ORDER BY product_id, run_id").reset_index(drop=True)


@pytest.fixture
def wh(tmp_path: Path) -> Any:
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as warehouse:
        warehouse.ensure_schema()
        yield warehouse


def test_first_load_writes_one_current_row_per_product(wh: Any, tmp_path: Path) -> None:
    files = [
        scored_file(tmp_path / "a.parquet", _ids(1, 2_500), 1),
        scored_file(tmp_path / "b.parquet", _ids(2501, 10), 2),
    ]
    result = _load(wh, files, "run-1")
    assert result.loaded and result.n_products == 2_510 and result.superseded == 0
    current = current_predictions(wh)
    assert len(current) == 2_510 and current["product_id"].is_unique
    assert set(current["run_id"]) == {"run-1"}
    assert current["model_version_mailer"].eq(1).all()
    source = pq.read_table(files[0]).to_pandas()
    np.testing.assert_allclose(current["prob_bag"].to_numpy()[:2_500], source["prob_bag"].to_numpy(), rtol=1e-7)
    assert current["recommended_type"].tolist()[:2_500] == source["recommended_type"].astype(str).tolist()
    runs = wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS}")
    assert runs["run_id"].tolist() == ["run-1"] and int(runs["n_products"].iloc[0]) == 2_510
    assert read_watermark(wh, "monthly") == datetime(2026, 2, 1)
    assert read_watermark(wh, "daily") is None
    assert not [t for t in wh.fetch_df("SHOW TABLES")["name"] if t.startswith("prediction_stage")]


def test_loading_the_same_run_again_changes_nothing(wh: Any, tmp_path: Path) -> None:
    files = [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)]
    _load(wh, files, "run-1")
    before = table(wh)
    again = _load(wh, files, "run-1")
    assert not again.loaded and again.n_products == 300
    pd.testing.assert_frame_equal(table(wh), before)
    assert len(wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS}")) == 1


def test_a_monthly_run_id_reused_in_daily_mode_is_refused(wh: Any, tmp_path: Path) -> None:
    files = [scored_file(tmp_path / "a.parquet", _ids(1, 300), 1)]
    _load(wh, files, "run-1")
    before, ledger = table(wh), wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS}")
    watermarks = wh.fetch_df("SELECT * FROM run_watermarks")
    with pytest.raises(WarehouseError) as err:
        _load(wh, files, "run-1", mode="daily")
    assert str(err.value) == "run id 'run-1' was already loaded by a monthly run; give this daily run a new --run-id"
    pd.testing.assert_frame_equal(table(wh), before)
    pd.testing.assert_frame_equal(wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS}"), ledger)
    pd.testing.assert_frame_equal(wh.fetch_df("SELECT * FROM run_watermarks"), watermarks)


def test_a_later_run_supersedes_only_the_products_it_scored(wh: Any, tmp_path: Path) -> None:
    _load(wh, [scored_file(tmp_path / "a.parquet", _ids(1, 100), 1)], "run-1")
    result = _load(wh, [scored_file(tmp_path / "b.parquet", _ids(51, 100), 2)], "run-2", versions=V2)
    assert result.superseded == 50
    assert result.previous is not None and result.previous["run_id"] == "run-1"
    current = current_predictions(wh)
    assert len(current) == 150 and current["product_id"].is_unique
    by_run = current.groupby("run_id").size().to_dict()
    assert by_run == {"run-1": 50, "run-2": 100}
    assert current.loc[current["run_id"] == "run-2", "model_version_mailer"].eq(3).all()
    assert len(table(wh)) == 200  # history stays, not current


def test_a_failure_inside_the_transaction_leaves_everything_as_it_was(
    wh: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(wh, [scored_file(tmp_path / "a.parquet", _ids(1, 100), 1)], "run-1", mode="daily")
    before = table(wh)
    files = [scored_file(tmp_path / "b.parquet", _ids(51, 100), 2)]
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "load-predictions/commit")
    with pytest.raises(InjectedFault):
        _load(wh, files, "run-2", mode="daily", watermark=datetime(2026, 3, 1))
    pd.testing.assert_frame_equal(table(wh), before)
    assert wh.fetch_df(f"SELECT run_id FROM {PREDICTION_RUNS}")["run_id"].tolist() == ["run-1"]
    assert read_watermark(wh, "daily") == datetime(2026, 2, 1)
    assert not [t for t in wh.fetch_df("SHOW TABLES")["name"] if t.startswith("prediction_stage")]

    monkeypatch.delenv("PACKWISE_FAIL_TASK")
    _load(wh, files, "run-2", mode="daily", watermark=datetime(2026, 3, 1))
    assert read_watermark(wh, "daily") == datetime(2026, 3, 1)
    assert len(current_predictions(wh)) == 150


def test_a_killed_load_then_rerun_equals_one_clean_load(tmp_path: Path) -> None:
    """kill -9 in the middle of the transaction (after the merge, before the commit), then run again."""
    first = scored_file(tmp_path / "a.parquet", _ids(1, 400), 1)
    second = scored_file(tmp_path / "b.parquet", _ids(201, 400), 2)
    path = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(path) as wh:
        wh.ensure_schema()
        _load(wh, [first], "run-1")
    shutil.copy(path, tmp_path / "clean.duckdb")

    script = textwrap.dedent(
        f"""
        import os
        from datetime import datetime
        from pathlib import Path
        import packwise.faults
        from packwise.warehouse.duckdb import DuckDBWarehouse
        from tests.unit.test_inference_loader import _load

        def die(task, package_type=None):
            if (task, package_type) == ("load-predictions", "commit"):
                os._exit(9)  # no rollback, no close: as if killed
        packwise.faults.maybe_fail = die
        wh = DuckDBWarehouse({str(path)!r})
        _load(wh, [Path({str(second)!r})], "run-2")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr

    with DuckDBWarehouse(path) as wh:
        assert len(current_predictions(wh)) == 400
        assert set(current_predictions(wh)["run_id"]) == {"run-1"}
        _load(wh, [second], "run-2")
        killed_then_rerun = table(wh)
    with DuckDBWarehouse(tmp_path / "clean.duckdb") as wh:
        _load(wh, [second], "run-2")
        clean = table(wh)
    pd.testing.assert_frame_equal(killed_then_rerun, clean)


def test_rows_that_do_not_add_up_are_not_loaded(wh: Any, tmp_path: Path) -> None:
    files = [scored_file(tmp_path / "a.parquet", _ids(1, 100), 1)]
    with pytest.raises(WarehouseError, match="expected 101"):
        _load(wh, files, "run-1", expected_rows=101)
    dup = [files[0], scored_file(tmp_path / "b.parquet", _ids(100, 1), 2)]
    with pytest.raises(WarehouseError, match="100 distinct"):
        _load(wh, dup, "run-1")
    assert not wh.table_exists(PREDICTIONS) and not wh.table_exists(PREDICTION_RUNS)  # not even the tables


def test_watermark_moves_only_forward_and_only_when_products_were_loaded(wh: Any, tmp_path: Path) -> None:
    assert daily_since(wh) is None
    _load(wh, [scored_file(tmp_path / "m.parquet", _ids(1, 10), 1)], "monthly-1", watermark=datetime(2026, 1, 20))
    assert daily_since(wh) == datetime(2026, 1, 20)  # a first daily run starts after the monthly run
    _load(
        wh,
        [scored_file(tmp_path / "d.parquet", _ids(11, 5), 2)],
        "daily-1",
        mode="daily",
        watermark=datetime(2026, 1, 25),
    )
    assert daily_since(wh) == datetime(2026, 1, 25)
    empty = scored_file(tmp_path / "e.parquet", [], 3)
    result = _load(wh, [empty], "daily-2", mode="daily", watermark=None, recommended={})
    assert result.loaded and result.n_products == 0
    assert result.watermark_after == result.watermark_before == "2026-01-25T00:00:00"
    _load(
        wh,
        [scored_file(tmp_path / "late.parquet", _ids(16, 2), 4)],
        "daily-3",
        mode="daily",
        watermark=datetime(2026, 1, 22),
    )
    assert daily_since(wh) == datetime(2026, 1, 25)  # never backwards


def test_a_new_package_type_adds_its_columns(tmp_path: Path) -> None:
    with open_warehouse_at(tmp_path) as wh:
        _load(wh, [scored_file(tmp_path / "a.parquet", _ids(1, 10), 1)], "run-1")
        cols = set(wh.fetch_df(f"SELECT * FROM {PREDICTIONS} LIMIT 0").columns)
        assert {"prob_box", "model_version_box", "is_current", "recommended_type"} <= cols


def open_warehouse_at(tmp_path: Path) -> Any:
    from packwise.config import WarehouseConfig

    return open_warehouse(WarehouseConfig(path=tmp_path / "other.duckdb"))


def _memory_limit(wh: DuckDBWarehouse) -> str:
    return str(wh.fetch_df("SELECT current_setting('memory_limit') AS m")["m"].iloc[0])


def test_a_load_runs_under_warehouse_duckdb_memory_spills_and_comes_out_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warehouse.duckdb_memory` bounds the whole load (insert, row check, supersede, commit), not only the
    extract: 300k products superseding a current run of the same products under 32MB come out with one
    current row each, and the limit is DuckDB's own again afterwards."""
    ids = _ids(1, 300_000)
    first = scored_file(tmp_path / "a.parquet", ids, 1)
    second = scored_file(tmp_path / "b.parquet", ids, 2)
    with DuckDBWarehouse(tmp_path / "wh.duckdb", memory_limit="32MB") as wh:
        wh.ensure_schema()
        default_limit = _memory_limit(wh)
        seen: list[str] = []
        insert = wh.insert_parquet

        def watched(*args: Any, **kwargs: Any) -> int:
            seen.append(_memory_limit(wh))
            return insert(*args, **kwargs)

        monkeypatch.setattr(wh, "insert_parquet", watched)
        _load(wh, [first], "run-1")
        result = _load(wh, [second], "run-2")
        assert seen == ["30.5 MiB", "30.5 MiB"] and _memory_limit(wh) == default_limit
        # the insert's own setting (rows in any order: no second write of them at commit) is restored too
        assert wh.fetch_df("SELECT current_setting('preserve_insertion_order') AS p")["p"].iloc[0]
        assert result.loaded and result.superseded == 300_000
    current_rows = (
        f"SELECT count(*) AS n, count(DISTINCT product_id) AS d, min(run_id) AS r, sum(prob_bag) AS s "
        f"FROM {PREDICTIONS} WHERE is_current"
    )
    with DuckDBWarehouse(tmp_path / "wh.duckdb", read_only=True) as wh:  # what the close wrote out
        current = wh.fetch_df(current_rows).iloc[0].tolist()
    expected = pq.read_table(second, columns=["prob_bag"]).column(0).to_numpy().astype("float64").sum()
    assert current[:3] == [300_000, 300_000, "run-2"] and current[3] == pytest.approx(expected, rel=1e-9)


def test_a_load_that_cannot_fit_even_spilling_names_the_setting_and_writes_nothing(tmp_path: Path) -> None:
    first = scored_file(tmp_path / "a.parquet", _ids(1, 1_000), 1)
    second = scored_file(tmp_path / "b.parquet", _ids(1, 400_000), 2)
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        wh.ensure_schema()
        _load(wh, [first], "run-1")
        before, ledger = table(wh), wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS}")
    with DuckDBWarehouse(tmp_path / "wh.duckdb", memory_limit="2MB") as wh:
        with pytest.raises(WarehouseError) as err:
            _load(wh, [second], "run-2", watermark=datetime(2026, 3, 1))
        assert "the load needs more than warehouse.duckdb_memory (2MB) even spilling; raise it" in str(err.value)
        assert "\n" not in str(err.value)
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        pd.testing.assert_frame_equal(table(wh), before)
        pd.testing.assert_frame_equal(wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS}"), ledger)
        assert read_watermark(wh, "monthly") == datetime(2026, 2, 1)


def test_a_load_after_large_writes_on_the_same_connection_still_fits_its_bound(tmp_path: Path) -> None:
    """What the connection's earlier statements hold in memory (here a keyed table's ART index of 1M ids,
    appended and not yet written out) does not count against the load's bound: the load writes it out
    first, then runs under `warehouse.duckdb_memory`."""
    scored = scored_file(tmp_path / "a.parquet", _ids(1, 100_000), 1)
    with DuckDBWarehouse(tmp_path / "wh.duckdb", memory_limit="32MB") as wh:
        wh.ensure_schema()
        wh.execute("CREATE TABLE keyed (id VARCHAR PRIMARY KEY, n BIGINT)")
        for start in range(0, 1_000_000, 250_000):  # appended in slices, as `packwise seed` fills products
            wh.append("keyed", pa.table({"id": _ids(start, 250_000), "n": np.arange(250_000)}))
        held = wh.fetch_df("SELECT sum(memory_usage_bytes) AS b FROM duckdb_memory() WHERE tag = 'ART_INDEX'")
        assert int(held["b"].iloc[0]) > 32 * 2**20  # more than the load's bound, before the load
        result = _load(wh, [scored], "run-1")
        assert result.loaded and result.n_products == 100_000
        assert len(current_predictions(wh)) == 100_000
