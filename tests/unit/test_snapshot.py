"""The extract step: content-addressed, atomic label snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from packwise.config import PackwiseConfig
from packwise.errors import DataValidationError, WarehouseError
from packwise.snapshot import (
    LABELS_FILE,
    MANIFEST_FILE,
    PRODUCTS_FILE,
    SnapshotInfo,
    extract_snapshot,
    fingerprint_files,
    load_snapshot_manifest,
)
from packwise.synthetic import SeedSpec, seed_warehouse
from packwise.warehouse import open_warehouse

SPEC = SeedSpec(seed=3, n_products=1_500, weeks=3, labels_per_week=200)


def _config(root: Path, **warehouse: str) -> PackwiseConfig:
    return PackwiseConfig.model_validate(
        {"storage": {"root": str(root / "state")}, "warehouse": {"path": str(root / "wh.duckdb"), **warehouse}}
    ).resolved()


@pytest.fixture()
def config(tmp_path: Path) -> PackwiseConfig:
    cfg = _config(tmp_path)
    with open_warehouse(cfg.warehouse) as wh:
        seed_warehouse(wh, SPEC)
    return cfg


def _entries(config: PackwiseConfig) -> list[str]:
    root = config.storage.snapshots
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_extract_writes_sorted_files_and_a_manifest(config: PackwiseConfig) -> None:
    info = extract_snapshot(config, week=2)
    assert isinstance(info, SnapshotInfo)
    assert info.path == config.storage.snapshots / info.fingerprint
    assert len(info.fingerprint) == 64 and info.short_fingerprint == info.fingerprint[:16]
    assert sorted(p.name for p in info.path.iterdir()) == [LABELS_FILE, MANIFEST_FILE, PRODUCTS_FILE]

    products = pq.read_table(info.products_path).to_pandas()
    labels = pq.read_table(info.labels_path).to_pandas()
    assert (info.n_products, info.n_labels) == (len(products), len(labels))
    assert products["product_id"].is_monotonic_increasing and products["product_id"].is_unique
    keys = list(zip(labels["product_id"], labels["package_type"], strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert list(labels.columns) == ["product_id", "package_type", "label"]
    assert set(labels["product_id"]) == set(products["product_id"])

    with open_warehouse(config.warehouse, read_only=True) as wh:
        expected = wh.fetch_df("SELECT count(DISTINCT (product_id, package_type)) AS n FROM labels WHERE week <= 2")[
            "n"
        ].iloc[0]
    assert info.n_labels == expected

    manifest = json.loads((info.path / MANIFEST_FILE).read_text())
    assert manifest["fingerprint"] == info.fingerprint and manifest["week"] == 2
    assert manifest["labels_query"] == config.warehouse.labels_query
    assert manifest["products_query"] == config.warehouse.products_query
    assert manifest["n_labels"] == info.n_labels and "created_at" in manifest
    assert load_snapshot_manifest(info.path, verify=True) == info
    assert load_snapshot_manifest(info.path / MANIFEST_FILE) == info


def test_snapshots_grow_week_over_week(config: PackwiseConfig) -> None:
    sizes = [extract_snapshot(config, week=w).n_labels for w in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert len(_entries(config)) == 3


def test_same_data_same_fingerprint_and_directory(config: PackwiseConfig) -> None:
    first = extract_snapshot(config, week=2)
    second = extract_snapshot(config, week=2)
    assert second == first
    assert _entries(config) == [first.fingerprint]  # reused, and no temporary directory left behind
    assert first.fingerprint == fingerprint_files(first.products_path, first.labels_path)


def test_identical_warehouses_give_identical_snapshots(tmp_path: Path, config: PackwiseConfig) -> None:
    twin = _config(tmp_path / "twin")
    with open_warehouse(twin.warehouse) as wh:
        seed_warehouse(wh, SPEC)
    assert extract_snapshot(twin, week=3).fingerprint == extract_snapshot(config, week=3).fingerprint


def test_one_changed_label_changes_the_fingerprint(config: PackwiseConfig) -> None:
    before = extract_snapshot(config, week=2)
    with open_warehouse(config.warehouse) as wh:
        wh.execute(
            "UPDATE labels SET label = 1 - label WHERE rowid = ("
            "SELECT min(rowid) FROM labels WHERE week = 1 AND source = 'shipment' AND product_id NOT IN "
            "(SELECT product_id FROM labels WHERE week = 2))"
        )
    after = extract_snapshot(config, week=2)
    assert after.fingerprint != before.fingerprint
    assert (after.n_labels, after.n_products) == (before.n_labels, before.n_products)
    assert before.path.exists() and after.path.exists()


def test_a_failing_query_names_the_key_and_leaves_no_directory(tmp_path: Path) -> None:
    good = _config(tmp_path)
    with open_warehouse(good.warehouse) as wh:
        seed_warehouse(wh, SPEC.model_copy(update={"n_products": 200, "labels_per_week": 20}))
    bad = _config(tmp_path, labels_query="SELECT product_id, package_type, lable FROM labels WHERE week <= $week")
    with pytest.raises(WarehouseError) as info:
        extract_snapshot(bad, week=1)
    message = str(info.value)
    assert "\n" not in message
    assert "labels_query" in message and "lable" in message
    assert "fix warehouse.labels_query in the config" in message
    assert _entries(bad) == []

    bad = _config(tmp_path, products_query="SELEC * FROM products")
    with pytest.raises(WarehouseError, match="products_query"):
        extract_snapshot(bad, week=1)
    assert _entries(bad) == []

    # Failing while rows stream, after products.parquet was already written.
    bad = _config(
        tmp_path,
        labels_query="SELECT product_id, package_type, "
        "CASE WHEN label = 1 THEN label ELSE error('label feed broken') END AS label FROM labels",
    )
    with pytest.raises(WarehouseError, match="label feed broken"):
        extract_snapshot(bad, week=1)
    assert _entries(bad) == []


def test_a_missing_warehouse_says_to_seed(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with pytest.raises(WarehouseError, match="packwise seed"):
        extract_snapshot(cfg, week=1)
    assert not cfg.storage.snapshots.exists()


def test_a_query_may_ignore_week(tmp_path: Path) -> None:
    cfg = _config(tmp_path, products_query="SELECT * FROM products WHERE category = 'books'")
    with open_warehouse(cfg.warehouse) as wh:
        seed_warehouse(wh, SPEC.model_copy(update={"n_products": 300, "labels_per_week": 20}))
    info = extract_snapshot(cfg, week=1)
    products = pq.read_table(info.products_path).to_pandas()
    assert len(products) == info.n_products > 0 and set(products["category"]) == {"books"}


def test_load_snapshot_manifest_errors(tmp_path: Path, config: PackwiseConfig) -> None:
    with pytest.raises(DataValidationError, match=r"manifest\.json"):
        load_snapshot_manifest(tmp_path / "nowhere")
    info = extract_snapshot(config, week=1)
    with info.labels_path.open("ab") as fh:
        fh.write(b"tampered")
    assert load_snapshot_manifest(info.path).fingerprint == info.fingerprint
    with pytest.raises(DataValidationError, match="modified"):
        load_snapshot_manifest(info.path, verify=True)
    (info.path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(DataValidationError, match="unreadable"):
        load_snapshot_manifest(info.path)
