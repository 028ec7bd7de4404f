"""inference.keep_runs: a load prunes the history that falls out, in its own transaction, on every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from packwise.config import WarehouseConfig
from packwise.errors import InjectedFault, WarehouseError
from packwise.predictions import PREDICTION_RUNS, PREDICTIONS, current_predictions
from packwise.warehouse import open_warehouse
from packwise.warehouse.duckdb import DuckDBWarehouse
from tests.unit.test_inference_loader import _ids, _load, scored_file

KEEP = 3


@pytest.fixture(params=["duckdb", "postgres"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "duckdb":
        with DuckDBWarehouse(tmp_path / "wh.duckdb") as warehouse:
            warehouse.ensure_schema()
            yield warehouse
        return
    dsn_env = request.getfixturevalue("postgres_dsn_env")
    with open_warehouse(WarehouseConfig(backend="postgres", dsn_env=dsn_env)) as warehouse:
        warehouse.ensure_schema()
        yield warehouse


def _runs_held(wh: Any) -> list[str]:
    return sorted(wh.fetch_df(f"SELECT DISTINCT run_id FROM {PREDICTIONS}")["run_id"])


def test_after_keep_plus_two_loads_only_keep_runs_remain(wh: Any, tmp_path: Path) -> None:
    ids = _ids(1, 400)
    gone = _ids(9_000, 5)  # scored in the first run only: their current row is older than every kept run
    results = []
    for i in range(KEEP + 2):
        files = [scored_file(tmp_path / f"r{i}.parquet", ids + (gone if i == 0 else []), seed=i)]
        results.append(_load(wh, files, f"run-{i}", keep_runs=KEEP))
    held = _runs_held(wh)
    # the newest KEEP runs, and run-0 only through the current rows of the products no later run scored
    assert held == ["run-0", "run-2", "run-3", "run-4"]
    old = wh.fetch_df(f"SELECT product_id, is_current FROM {PREDICTIONS} WHERE run_id = 'run-0'")
    assert sorted(old["product_id"]) == gone and old["is_current"].all()
    assert wh.fetch_df(f"SELECT count(*) AS n FROM {PREDICTIONS} WHERE run_id = 'run-1'")["n"].iloc[0] == 0
    assert [r.pruned for r in results] == [0, 0, 0, 400, 400]
    current = current_predictions(wh)
    assert len(current) == len(ids) + len(gone) and current["product_id"].is_unique
    assert set(current.loc[current["product_id"].isin(ids), "run_id"]) == {"run-4"}
    # the ledger keeps every run id: loading a pruned run again still changes nothing
    assert len(wh.fetch_df(f"SELECT run_id FROM {PREDICTION_RUNS}")) == KEEP + 2
    again = _load(wh, [tmp_path / "r1.parquet"], "run-1", keep_runs=KEEP)
    assert not again.loaded and _runs_held(wh) == held


def test_daily_runs_keep_their_own_history_and_do_not_push_the_monthly_runs_out(wh: Any, tmp_path: Path) -> None:
    """keep_runs counts the runs of each mode: a month of daily runs (more than keep_runs of them) leaves the
    monthly runs' history alone, and the daily runs' own history is bounded the same way."""
    inventory, new = _ids(1, 300), _ids(5_000, 40)
    for month in range(KEEP):
        files = [scored_file(tmp_path / f"m{month}.parquet", inventory, seed=month)]
        _load(wh, files, f"monthly-{month}", keep_runs=KEEP)
    for day in range(KEEP + 3):  # the same new products, rescored every day
        files = [scored_file(tmp_path / f"d{day}.parquet", new, seed=100 + day)]
        _load(wh, files, f"daily-{day}", mode="daily", keep_runs=KEEP)
    held = _runs_held(wh)
    assert [r for r in held if r.startswith("monthly")] == ["monthly-0", "monthly-1", "monthly-2"]
    assert [r for r in held if r.startswith("daily")] == ["daily-3", "daily-4", "daily-5"]
    superseded = wh.fetch_df(f"SELECT count(*) AS n FROM {PREDICTIONS} WHERE run_id = 'monthly-0'")["n"].iloc[0]
    assert superseded == len(inventory)  # the oldest month's whole history is still there
    _load(wh, [scored_file(tmp_path / "m3.parquet", inventory, seed=3)], "monthly-3", keep_runs=KEEP)
    assert [r for r in _runs_held(wh) if r.startswith("monthly")] == ["monthly-1", "monthly-2", "monthly-3"]


def test_a_failed_load_prunes_nothing(wh: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _ids(1, 50)
    for i in range(KEEP):
        _load(wh, [scored_file(tmp_path / f"r{i}.parquet", ids, seed=i)], f"run-{i}", keep_runs=KEEP)
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "load-predictions/commit")
    with pytest.raises(InjectedFault):
        _load(wh, [scored_file(tmp_path / "x.parquet", ids, seed=9)], "run-x", keep_runs=KEEP)
    assert _runs_held(wh) == ["run-0", "run-1", "run-2"]


def test_unbounded_keeps_everything_and_zero_is_refused_before_writing(wh: Any, tmp_path: Path) -> None:
    ids = _ids(1, 20)
    for i in range(3):
        _load(wh, [scored_file(tmp_path / f"r{i}.parquet", ids, seed=i)], f"run-{i}", keep_runs=None)
    assert _runs_held(wh) == ["run-0", "run-1", "run-2"]
    with pytest.raises(WarehouseError, match="keep_runs"):
        _load(wh, [tmp_path / "r0.parquet"], "run-z", keep_runs=0)
    assert len(wh.fetch_df(f"SELECT run_id FROM {PREDICTION_RUNS}")) == 3
