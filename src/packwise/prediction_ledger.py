"""The predictions tables and what is read from them: the load ledger, the watermarks, the current rows.

Tables (created on first load by `ensure_tables`; a package type added to the configuration adds its columns):

- ``predictions``: one row per (product, run that scored it). ``is_current`` marks the latest row of a
  product; every product ever scored has exactly one current row. Columns: product_id, run_id, mode,
  recommended_type, ``prob_<type>`` and ``model_version_<type>`` per package type, is_current. On
  PostgreSQL a view of a current table and its history (`packwise.prediction_tables`).
- ``prediction_runs``: the load ledger, one row per loaded run id: mode, product count, the window
  (since, watermark), models, recommended type counts, unseen category counts, loaded_at.
- ``run_watermarks`` (pipeline ``inference``, per mode): the largest ``added_at`` a run loaded.

The exactly-once load that writes them is `packwise.predictions.load_predictions` (which re-exports these
names, the import path callers use).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from packwise.errors import WarehouseError
from packwise.scoring import RECOMMENDED, prob_column

if TYPE_CHECKING:
    from packwise.warehouse import Warehouse

PREDICTIONS = "predictions"
PREDICTION_RUNS = "prediction_runs"
WATERMARKS = "run_watermarks"
PIPELINE = "inference"
MODES = ("daily", "monthly")

RUNS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR"),
    ("mode", "VARCHAR"),
    ("n_products", "BIGINT"),
    ("since", "TIMESTAMP"),
    ("watermark", "TIMESTAMP"),
    ("models", "VARCHAR"),
    ("recommended", "VARCHAR"),
    ("unseen", "VARCHAR"),
    ("loaded_at", "TIMESTAMP"),
)


def model_version_column(package_type: str) -> str:
    """Name of the column holding the model version that scored a package type."""
    return f"model_version_{package_type}"


def predictions_columns(package_types: Sequence[str]) -> list[tuple[str, str]]:
    """The predictions table's columns for these package types, in order."""
    cols = [("product_id", "VARCHAR"), ("run_id", "VARCHAR"), ("mode", "VARCHAR"), (RECOMMENDED, "VARCHAR")]
    cols += [(prob_column(t), "DOUBLE PRECISION") for t in package_types]
    cols += [(model_version_column(t), "INTEGER") for t in package_types]
    cols.append(("is_current", "BOOLEAN"))
    return cols


class LoadResult(BaseModel):
    """What a load did.

    Attributes:
        run_id: The run.
        loaded: False when the run id had been loaded before (nothing changed this time).
        n_products: Products of the run (from the ledger when already loaded).
        superseded: Current rows of earlier runs that these rows replaced as current.
        watermark_before: The mode's watermark before the load.
        watermark_after: The mode's watermark after it.
        previous: The ledger row of the previous run of the same mode that scored products, if any.
        pruned: Superseded rows of runs older than the newest `keep_runs` that this load deleted.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    loaded: bool
    n_products: int
    superseded: int
    watermark_before: str | None
    watermark_after: str | None
    previous: dict[str, Any] | None = None
    recommended: dict[str, int] = Field(default_factory=dict)
    pruned: int | None = None  # history rows the retention deleted; None where not counted (Redshift)

    def to_dict(self) -> dict[str, Any]:
        """`model_dump()` (the ledger row in `previous` as read), kept for inference.py (its slice converts it)."""
        return self.model_dump()


def iso_or_none(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()


def read_watermark(warehouse: Warehouse, mode: str) -> datetime | None:
    """The watermark of a mode (`daily` or `monthly`), or None before its first load."""
    if not warehouse.table_exists(WATERMARKS):
        return None
    found = warehouse.fetch_df(
        f"SELECT watermark FROM {WATERMARKS} WHERE pipeline = $pipeline AND mode = $mode",
        {"pipeline": PIPELINE, "mode": mode},
    )
    if found.empty or pd.isna(found["watermark"].iloc[0]):
        return None
    stamp: datetime = pd.Timestamp(found["watermark"].iloc[0]).to_pydatetime()
    return stamp


def check_run_mode(warehouse: Warehouse, run_id: str, mode: str) -> None:
    """Raises if `run_id` is already in the load ledger with another mode (a reused run id).

    Reloading a run id of the same mode is the idempotent retry; of another mode it would be a silent
    no-op that reports the other mode's watermark, so it is refused.

    Raises:
        WarehouseError: The run id was loaded by a run of the other mode.
    """
    if warehouse.table_exists(PREDICTION_RUNS):
        refuse_other_mode(ledger_row(warehouse, run_id), run_id, mode)


def refuse_other_mode(done: dict[str, Any] | None, run_id: str, mode: str) -> None:
    if done is not None and done["mode"] != mode:
        raise WarehouseError(
            f"run id {run_id!r} was already loaded by a {done['mode']} run; give this {mode} run a new --run-id"
        )


def daily_since(warehouse: Warehouse) -> datetime | None:
    """Where a daily run starts: the daily watermark, else the last monthly run's, else nothing (everything).

    A monthly run scores every product, so a first daily run after one needs only what came later; on a
    warehouse that was never scored, the first daily run is a full backfill, so no product is missed.
    """
    return read_watermark(warehouse, "daily") or read_watermark(warehouse, "monthly")


def ensure_tables(warehouse: Warehouse, package_types: Sequence[str]) -> None:
    from packwise import prediction_tables
    from packwise.warehouse import InheritsTables, RunStager

    if isinstance(warehouse, InheritsTables) and not isinstance(warehouse, RunStager):
        if not warehouse.table_exists(PREDICTIONS):
            prediction_tables.create(warehouse, package_types)
        if prediction_tables.uses_swapped_tables(warehouse):
            prediction_tables.add_columns(warehouse, package_types)
            _ensure_ledger_tables(warehouse)
            return
    cols = ", ".join(f"{n} {t}" for n, t in predictions_columns(package_types))
    # (product_id, run_id) is unique by construction: the ledger admits a run id once and the load checks
    # the run's products are distinct. Where a key is an index kept up row by row (DuckDB, PostgreSQL) the
    # table gets none: on DuckDB it cost 3x the insert itself at 1M rows; on PostgreSQL a monthly load's
    # UPDATE of 1M current rows took 4.7 s with it and 2.1 s without, its INSERT 2.4 s and 0.7 s. Redshift
    # (which stages its loads its own way) keeps its declared key: informational there, never enforced or
    # maintained. A table created before keeps its key and loads as before.
    key = ", PRIMARY KEY (product_id, run_id)" if isinstance(warehouse, RunStager) else ""
    warehouse.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTIONS} ({cols}{key})")
    have = set(
        warehouse.fetch_df(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $name "
            "AND table_schema = current_schema()",
            {"name": PREDICTIONS},
        )["column_name"]
    )
    for name, sql_type in predictions_columns(package_types):
        if name not in have:
            # a package type added to the configuration; older rows hold NULL for it
            warehouse.execute(f"ALTER TABLE {PREDICTIONS} ADD COLUMN {name} {sql_type}")
    _ensure_ledger_tables(warehouse)


def _ensure_ledger_tables(warehouse: Warehouse) -> None:
    runs = ", ".join(f"{n} {t}" for n, t in RUNS_COLUMNS)
    warehouse.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTION_RUNS} ({runs}, PRIMARY KEY (run_id))")
    warehouse.execute(
        f"CREATE TABLE IF NOT EXISTS {WATERMARKS} (pipeline VARCHAR, mode VARCHAR, watermark TIMESTAMP, "
        "run_id VARCHAR, updated_at TIMESTAMP, PRIMARY KEY (pipeline, mode))"
    )


def ledger_row(warehouse: Warehouse, run_id: str) -> dict[str, Any] | None:
    found = warehouse.fetch_df(f"SELECT * FROM {PREDICTION_RUNS} WHERE run_id = $run_id", {"run_id": run_id})
    return None if found.empty else _ledger_dict(found.iloc[0])


def _ledger_dict(row: pd.Series) -> dict[str, Any]:
    return {
        "run_id": str(row["run_id"]),
        "mode": str(row["mode"]),
        "n_products": int(row["n_products"]),
        "since": iso_or_none(row["since"]),
        "watermark": iso_or_none(row["watermark"]),
        "models": json.loads(row["models"]),
        "recommended": json.loads(row["recommended"]),
        "unseen": json.loads(row["unseen"]),
        "loaded_at": iso_or_none(row["loaded_at"]),
    }


def already_loaded(warehouse: Warehouse, run_id: str, mode: str | None = None) -> LoadResult | None:
    """The result of loading `run_id` again when its ledger row says it was loaded: nothing changes.

    Raises:
        WarehouseError: `mode` is given and the ledger row is of the other mode (see `check_run_mode`).
    """
    done = ledger_row(warehouse, run_id)
    if mode is not None:
        refuse_other_mode(done, run_id, mode)
    if done is None:
        return None
    wm = iso_or_none(read_watermark(warehouse, done["mode"]))
    return LoadResult(
        run_id=run_id,
        loaded=False,
        n_products=done["n_products"],
        superseded=0,
        watermark_before=wm,
        watermark_after=wm,
        previous=previous_run(warehouse, done["mode"], run_id),
        recommended=done["recommended"],
    )


def previous_run(warehouse: Warehouse, mode: str, before_run_id: str | None = None) -> dict[str, Any] | None:
    """The latest loaded run of `mode` that scored products, other than `before_run_id`."""
    if not warehouse.table_exists(PREDICTION_RUNS):
        return None
    found = warehouse.fetch_df(
        f"SELECT * FROM {PREDICTION_RUNS} WHERE mode = $mode AND n_products > 0 AND run_id <> $run_id "
        "ORDER BY loaded_at DESC, run_id DESC LIMIT 1",
        {"mode": mode, "run_id": before_run_id or ""},
    )
    return None if found.empty else _ledger_dict(found.iloc[0])


def current_predictions(warehouse: Warehouse) -> pd.DataFrame:
    """Every current prediction, ordered by product_id (small warehouses, tests and reports)."""
    return warehouse.fetch_df(f"SELECT * FROM {PREDICTIONS} WHERE is_current ORDER BY product_id")
