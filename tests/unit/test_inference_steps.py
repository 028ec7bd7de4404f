"""The inference steps as plain functions: extract windows, prepare checks, shard sizes, collect, pins."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from packwise.config import InferenceConfig, PackwiseConfig
from packwise.errors import ConfigError, DataValidationError, PackwiseError
from packwise.inference import (
    collect_scores,
    extract_products,
    parse_pins,
    prepare_products,
    rows_per_shard,
    shard_products,
)
from packwise.synthetic import add_products
from packwise.warehouse import open_warehouse
from tests.conftest import make_config, seed
from tests.unit.test_inference_scoring import models_entry, train_models


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    config = make_config(tmp_path_factory.mktemp("steps") / "state")
    seed(config, seed=4, n_products=3_000, weeks=2, labels_per_week=100)
    return config


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return models_entry(train_models(tmp_path_factory.mktemp("models"), n=1_000, rounds=5))


def test_extract_is_content_addressed_and_daily_selects_after_the_watermark(cfg: PackwiseConfig) -> None:
    inference = InferenceConfig()
    first = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "r1")
    again = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "r2")
    assert first["extract_dir"] == again["extract_dir"] and first["n_products"] == 3_000
    ids = pq.read_table(Path(first["extract_dir"]) / "products.parquet", columns=["product_id"]).column(0).to_pylist()
    assert ids == sorted(ids)
    # no watermark at all: the first daily run is a full backfill
    daily = extract_products(cfg.warehouse, inference, cfg.storage.root, "daily", "r3")
    assert daily["since"] is None and daily["n_products"] == 3_000
    assert daily["watermark"] == first["watermark"]


def test_extract_names_the_query_to_fix(cfg: PackwiseConfig) -> None:
    inference = InferenceConfig(inventory_query="SELECT * FROM productz")
    with pytest.raises(PackwiseError, match=r"^inference.inventory_query failed: .*productz.*fix inference"):
        extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "bad")


def test_config_rejects_a_daily_query_without_since() -> None:
    with pytest.raises(ValueError, match=r"\$since"):
        InferenceConfig(new_products_query="SELECT * FROM products")


def test_prepare_finds_a_duplicate_across_a_batch_boundary(cfg: PackwiseConfig, models: dict[str, Any]) -> None:
    inference = InferenceConfig(
        inventory_query="SELECT * FROM products UNION ALL SELECT * FROM products WHERE product_id = 'P0001024'"
    )
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "dup")
    # P0001024 is the 1024th id, so its twin opens the second batch of 1024 rows
    with pytest.raises(DataValidationError, match=r"duplicate product_id rows \(e.g. 'P0001024'\)"):
        prepare_products(Path(record["extract_dir"]), models, "monthly", 1_024)


def test_prepare_counts_duplicates_inside_a_batch_and_refuses_null_ids(
    cfg: PackwiseConfig, models: dict[str, Any]
) -> None:
    """The neighbour comparison on the sorted extract counts every repeated row of a batch (each row past
    the first of its id), and a null id is its own error, as the whole-frame check said."""
    twice = "SELECT * FROM products WHERE product_id IN ('P0000007', 'P0000500')"
    inference = InferenceConfig(
        inventory_query=f"SELECT * FROM products UNION ALL {twice} UNION ALL {twice} UNION ALL "
        "SELECT * FROM products WHERE product_id = 'P0000500'"
    )
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "dups")
    with pytest.raises(DataValidationError, match=r"products has 5 duplicate product_id rows \(e.g. 'P0000007'\)"):
        prepare_products(Path(record["extract_dir"]), models, "monthly", 1_024)
    inference = InferenceConfig(
        inventory_query="SELECT * REPLACE (CASE WHEN product_id = 'P0000009' THEN NULL ELSE product_id END "
        "AS product_id) FROM products"
    )
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "null")
    with pytest.raises(DataValidationError, match=r"^inventory: 1 products have a null product_id; filter them out"):
        prepare_products(Path(record["extract_dir"]), models, "monthly", 1_024)


def test_prepare_names_the_model_that_reads_a_missing_column(cfg: PackwiseConfig, models: dict[str, Any]) -> None:
    inference = InferenceConfig(new_products_query="SELECT * EXCLUDE (material) FROM products WHERE added_at > $since")
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "daily", "missing")
    with pytest.raises(DataValidationError) as err:
        prepare_products(Path(record["extract_dir"]), models, "daily", 1_024)
    assert str(err.value) == (
        "inventory: feature column 'material' is missing from products (the own_container v1 model reads it); "
        "add it to inference.new_products_query"
    )


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (
            "CAST(substr(product_id, 2) AS BIGINT) AS product_id",
            "inventory: column 'product_id' in products has type int64; expected string; cast it in "
            "inference.inventory_query",
        ),
        (
            "length(category) AS category",
            "inventory: column 'category' in products has type int64; expected string; cast it in "
            "inference.inventory_query or remove it from features.categorical",
        ),
    ],
    ids=["integer-ids", "integer-category"],
)
def test_prepare_names_a_wrongly_typed_id_or_category_column(
    cfg: PackwiseConfig, models: dict[str, Any], replace: str, expected: str
) -> None:
    # product ids are typed on a sample of each batch and categories are read dictionary-encoded: the
    # message is still the column's own, with its type and the fix
    inference = InferenceConfig(inventory_query=f"SELECT * REPLACE ({replace}) FROM products")
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", f"typed-{len(replace)}")
    with pytest.raises(DataValidationError) as err:
        prepare_products(Path(record["extract_dir"]), models, "monthly", 1_024)
    assert str(err.value) == expected


def test_shards_follow_the_row_and_byte_targets(cfg: PackwiseConfig, models: dict[str, Any]) -> None:
    record = extract_products(cfg.warehouse, InferenceConfig(), cfg.storage.root, "monthly", "shards")
    plan = prepare_products(Path(record["extract_dir"]), models, "monthly", 65_536)
    assert "title" not in plan["columns"]  # tabular models: the title is not carried into shards
    by_rows = shard_products(plan, InferenceConfig(shard_target_rows=700, batch_rows=1_024))
    sizes = [pq.ParquetFile(s).metadata.num_rows for s in by_rows]
    assert sizes == [700, 700, 700, 700, 200]
    assert shard_products(plan, InferenceConfig(shard_target_rows=700, batch_rows=1_024)) == by_rows  # reused
    per_row = 3_000 * 1024 * 1024 // rows_per_shard(Path(plan["products_path"]), plan["columns"], 10**9, 1024 * 1024)
    assert 40 < per_row / 3_000 < 200  # about a hundred uncompressed bytes per product
    by_bytes = shard_products(plan, InferenceConfig(shard_target_bytes=1024 * 1024))
    assert len(by_bytes) == 1


def test_an_empty_daily_extract_gives_one_empty_shard(cfg: PackwiseConfig, models: dict[str, Any]) -> None:
    with open_warehouse(cfg.warehouse) as wh:
        add_products(wh, 1, seed=1, added_at=datetime(2030, 1, 1))
    inference = InferenceConfig(
        new_products_query="SELECT * FROM products WHERE added_at > $since AND added_at > TIMESTAMP '2031-01-01'"
    )
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "daily", "empty")
    assert record["n_products"] == 0 and record["watermark"] is None
    plan = prepare_products(Path(record["extract_dir"]), models, "daily", 1_024)
    shards = shard_products(plan, inference)
    assert len(shards) == 1 and pq.ParquetFile(shards[0]).metadata.num_rows == 0


def test_collect_refuses_a_shortfall(tmp_path: Path) -> None:
    from tests.unit.test_inference_loader import scored_file

    path = scored_file(tmp_path / "s.parquet", ["P1", "P2"], 1)
    plan = {"package_types": ["own_container", "bag", "mailer", "box"], "n_products": 3,
            "models": {t: {"version": 1} for t in ["own_container", "bag", "mailer", "box"]}}  # fmt: skip
    with pytest.raises(PackwiseError, match="2 products scored, 3 prepared"):
        collect_scores([(path, {"rows": 2})], plan)
    with pytest.raises(PackwiseError, match="holds 2 rows, its task reported 5"):
        collect_scores([(path, {"rows": 5})], plan)
    manifest = collect_scores([(path, {"rows": 2, "recommended": {"box": 2}})], {**plan, "n_products": 2})
    assert manifest["n_products"] == 2 and manifest["recommended"]["box"] == 2


def test_the_load_task_refuses_a_missing_or_short_shard_before_it_writes_anything(tmp_path: Path) -> None:
    from packwise.config import InferenceConfig, WarehouseConfig
    from packwise.inference import load_predictions
    from packwise.lineage import read_run_record
    from packwise.predictions import PREDICTIONS
    from tests.unit.test_inference_loader import scored_file

    types = ["own_container", "bag", "mailer", "box"]
    first = scored_file(tmp_path / "s0.parquet", ["P1", "P2"], 1)
    second = scored_file(tmp_path / "s1.parquet", ["P3"], 2)
    plan = {"package_types": types, "n_products": 3, "models": {t: {"version": 1} for t in types}}
    warehouse = WarehouseConfig(path=tmp_path / "wh.duckdb")
    root = tmp_path / "state"

    def load(scored: list[tuple[Path, dict[str, Any]]], run_id: str) -> dict[str, Any]:
        return load_predictions(plan, scored, warehouse, InferenceConfig(), root, run_id, "monthly", None, None)

    with pytest.raises(PackwiseError, match="2 products scored, 3 prepared; re-run the pipeline"):
        load([(first, {"rows": 2})], "short")  # a shard's output never reached the load
    with pytest.raises(PackwiseError, match=r"s1\.parquet\.gone is missing"):
        load([(first, {"rows": 2}), (tmp_path / "s1.parquet.gone", {"rows": 1})], "missing")
    with pytest.raises(PackwiseError, match=r"s1\.parquet holds 1 rows, its task reported 2"):
        load([(first, {"rows": 2}), (second, {"rows": 2})], "mismatch")
    assert not warehouse.path.exists()  # not even opened: the check runs first
    assert all(read_run_record(root, f"{r}.load") is None for r in ("short", "missing", "mismatch"))

    record = load([(first, {"rows": 2, "recommended": {"box": 2}}), (second, {"rows": 1})], "whole")
    assert record["loaded"] and record["n_products"] == 3 and record["recommended"]["box"] == 2
    assert read_run_record(root, "whole.load") == record
    with open_warehouse(warehouse, read_only=True) as wh:
        assert wh.fetch_df(f"SELECT count(*) AS n FROM {PREDICTIONS}")["n"].iloc[0] == 3


def test_parse_pins() -> None:
    assert parse_pins(["mailer=3", " box = 2"]) == {"mailer": 3, "box": 2}
    for bad in ("mailer", "mailer=x", "=3", "mailer=0"):
        with pytest.raises(ConfigError, match="expected TYPE=VERSION"):
            parse_pins([bad])


def test_prepare_refuses_infinite_values_instead_of_scoring_them(cfg: PackwiseConfig, models: dict[str, Any]) -> None:
    inference = InferenceConfig(
        inventory_query="SELECT * REPLACE (CASE WHEN product_id IN ('P0000003', 'P0002000') "
        "THEN 'inf'::DOUBLE ELSE length_cm END AS length_cm) FROM products"
    )
    record = extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "inf")
    with pytest.raises(DataValidationError) as err:
        prepare_products(Path(record["extract_dir"]), models, "monthly", 1_024)  # counted over every batch
    assert str(err.value) == (
        "inventory: column 'length_cm' in products has 2 infinite values; "
        "make inference.inventory_query return finite numbers or null"
    )


def test_an_empty_monthly_inventory_is_refused_before_anything_is_written(cfg: PackwiseConfig) -> None:
    inference = InferenceConfig(inventory_query="SELECT * FROM products WHERE added_at > TIMESTAMP '2031-01-01'")
    extracts = cfg.storage.root / "inference" / "extracts"
    before = sorted(extracts.iterdir()) if extracts.exists() else []
    with pytest.raises(DataValidationError) as err:
        extract_products(cfg.warehouse, inference, cfg.storage.root, "monthly", "empty-monthly")
    assert str(err.value) == (
        "inventory: inference.inventory_query returned no products; a monthly run scores the whole inventory, "
        "so check inference.inventory_query and the warehouse"
    )
    assert (sorted(extracts.iterdir()) if extracts.exists() else []) == before
    assert not list(cfg.storage.root.rglob("*empty-monthly*"))
