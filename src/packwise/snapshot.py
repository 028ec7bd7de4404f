"""The extract step: a content-addressed label snapshot of one week.

`extract_snapshot` unloads the configured products and labels queries into two Parquet files in a
hidden temporary directory, fingerprints their bytes, writes `manifest.json` and renames the
directory to `snapshots/<fingerprint>/` in one step. Readers therefore see a complete snapshot or
none, and the same data always lands in the same directory, which is reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from packwise.errors import DataValidationError, WarehouseError
from packwise.files import publish_directory
from packwise.warehouse import QueryError, open_warehouse

if TYPE_CHECKING:
    from packwise.config import PackwiseConfig
    from packwise.warehouse import Warehouse

PRODUCTS_FILE = "products.parquet"
LABELS_FILE = "labels.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1

_PRODUCTS_ORDER = ("product_id",)
_LABELS_ORDER = ("product_id", "package_type")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotInfo:
    """A label snapshot on disk.

    Attributes:
        path: The snapshot directory (`snapshots/<fingerprint>`).
        fingerprint: Full sha256 hex digest of the two Parquet files' bytes.
        week: The week the caller asked for (the manifest keeps the week that first produced it).
        n_products: Rows of products.parquet.
        n_labels: Rows of labels.parquet.
    """

    path: Path
    fingerprint: str
    week: int
    n_products: int
    n_labels: int

    @property
    def products_path(self) -> Path:
        """The products Parquet file, sorted by product_id."""
        return self.path / PRODUCTS_FILE

    @property
    def labels_path(self) -> Path:
        """The labels Parquet file, sorted by product_id and package_type."""
        return self.path / LABELS_FILE

    @property
    def short_fingerprint(self) -> str:
        """The first 16 hex digits, for display."""
        return self.fingerprint[:16]


def fingerprint_files(products: Path, labels: Path) -> str:
    """sha256 over both files' bytes, each preceded by its name and length so no two splits collide."""
    digest = hashlib.sha256()
    for path in (products, labels):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _unload(warehouse: Warehouse, key: str, sql: str, week: int, path: Path, order_by: tuple[str, ...]) -> int:
    try:
        return int(warehouse.copy_query_to_parquet(sql, {"week": week}, path, order_by))
    except QueryError as err:
        raise WarehouseError(
            f"warehouse.{key} failed for week {week}: {err}; fix warehouse.{key} in the config"
        ) from None


LATEST_WEEK = 0  # a training week of 0 means the newest week that has labels (the schedules use it)


def resolve_training_week(
    warehouse: Warehouse, week: int, allow_no_new_labels: bool = False, weeks_query: str = "SELECT week FROM labels"
) -> int:
    """The label week a training run trains on, checked against the label history.

    Queries the largest label week and the number of labels of `week` in `weeks_query`'s result
    (``warehouse.label_weeks_query``: one row per label, a ``week`` column).

    Args:
        warehouse: An open warehouse.
        week: The requested week; `LATEST_WEEK` (0) resolves to the newest labelled week.
        allow_no_new_labels: Accept a week inside the history that has no labels of its own (the
            snapshot then equals the previous week's).

    Returns:
        The week to train on (never 0).

    Raises:
        DataValidationError: No labels at all, the week is past the history, or (unless allowed) it
            brings no new labels.
    """
    try:
        found = warehouse.fetch_df(
            "SELECT MAX(w.week) AS last_week, SUM(CASE WHEN w.week = $week THEN 1 ELSE 0 END) AS n_week "
            f"FROM ({weeks_query}) AS w",
            {"week": week},
        )
    except QueryError as err:
        raise WarehouseError(
            f"warehouse.label_weeks_query failed: {err}; fix warehouse.label_weeks_query in the config "
            "(it returns a `week` column, one row per label)"
        ) from None
    last = found["last_week"].iloc[0] if len(found) else None
    if last is None or pd.isna(last):  # an empty labels table
        raise DataValidationError("the warehouse has no labels; load labels (or run `packwise seed`) first")
    last_week = int(last)
    if week == LATEST_WEEK:
        return last_week
    if week > last_week:
        raise DataValidationError(
            f"week {week} is past the label history (last week: {last_week}); "
            f"pass --week {last_week} (or 0 for the newest week)"
        )
    n_week = found["n_week"].iloc[0]
    if not allow_no_new_labels and (pd.isna(n_week) or int(n_week) == 0):
        raise DataValidationError(
            f"week {week} brings no new labels (its snapshot would equal the week before's); "
            "pass --allow-no-new-labels to train anyway"
        )
    return week


def extract_snapshot(config: PackwiseConfig, week: int) -> SnapshotInfo:
    """Unloads the labelled products and labels of `week` into a content-addressed snapshot.

    Args:
        config: The resolved configuration (absolute paths).
        week: Bound to `$week` in warehouse.products_query and warehouse.labels_query.

    Returns:
        The snapshot; an existing one with identical content is reused.

    Raises:
        WarehouseError: The warehouse file is missing or a query fails; no snapshot directory is left.
    """
    wh = config.warehouse
    root = config.storage.snapshots
    # Opening first: a missing warehouse (the backend says to run `packwise seed`) leaves no trace.
    with open_warehouse(wh, read_only=True) as warehouse:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-snapshot-", dir=root))
        try:
            n_products = _unload(
                warehouse, "products_query", wh.products_query, week, tmp / PRODUCTS_FILE, _PRODUCTS_ORDER
            )
            n_labels = _unload(warehouse, "labels_query", wh.labels_query, week, tmp / LABELS_FILE, _LABELS_ORDER)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    try:
        fingerprint = fingerprint_files(tmp / PRODUCTS_FILE, tmp / LABELS_FILE)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "fingerprint": fingerprint,
            "week": week,
            "n_products": n_products,
            "n_labels": n_labels,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "products_query": wh.products_query,
            "labels_query": wh.labels_query,
            "params": {"week": week},
            "files": {
                PRODUCTS_FILE: {"rows": n_products, "order_by": list(_PRODUCTS_ORDER)},
                LABELS_FILE: {"rows": n_labels, "order_by": list(_LABELS_ORDER)},
            },
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        final = root / fingerprint
        if not final.exists():
            publish_directory(tmp, final, MANIFEST_FILE)  # a concurrent extract of the same data is as good
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    stored = load_snapshot_manifest(final)
    return SnapshotInfo(
        path=stored.path,
        fingerprint=stored.fingerprint,
        week=week,
        n_products=stored.n_products,
        n_labels=stored.n_labels,
    )


def load_snapshot_manifest(path: Path, verify: bool = False) -> SnapshotInfo:
    """Reads a snapshot directory's manifest.

    Args:
        path: The snapshot directory (or its manifest.json).
        verify: Also re-hash the Parquet files and compare with the recorded fingerprint.

    Returns:
        The snapshot as recorded, with the week that first produced it.

    Raises:
        DataValidationError: The manifest is missing or unreadable, or the files do not match it.
    """
    path = Path(path)
    directory = path.parent if path.name == MANIFEST_FILE else path
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.exists():
        raise DataValidationError(f"{directory} has no {MANIFEST_FILE}; re-run the extract step to rebuild it")
    try:
        data = json.loads(manifest_path.read_text())
        info = SnapshotInfo(
            path=directory,
            fingerprint=str(data["fingerprint"]),
            week=int(data["week"]),
            n_products=int(data["n_products"]),
            n_labels=int(data["n_labels"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise DataValidationError(
            f"{manifest_path} is unreadable ({type(err).__name__}: {err}); delete {directory} and re-run extract"
        ) from None
    if verify:
        for file in (info.products_path, info.labels_path):
            if not file.exists():
                raise DataValidationError(f"{file} is missing; delete {directory} and re-run extract")
        actual = fingerprint_files(info.products_path, info.labels_path)
        if actual != info.fingerprint:
            raise DataValidationError(
                f"snapshot {directory} was modified (fingerprint {actual[:16]} != {info.short_fingerprint}); "
                "delete it and re-run extract"
            )
    return info
