"""`packwise init --table T --label-table L`: a config for the user's own tables, and what it takes to run it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from packwise.config import FeatureConfig, load_config
from packwise_app.cli import app


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _shop(path: Path, with_week: bool = True, with_added: bool = True) -> None:
    n = 60
    products = pd.DataFrame(
        {
            "item": [f"I{i:03d}" for i in range(n)],
            "weight_g": [100.0 + 7 * i for i in range(n)],
            "units": list(range(n)),
            "fragile": [i % 2 == 0 for i in range(n)],
            "hazmat": [i % 3 == 0 for i in range(n)],  # stored as 0/1 integers below
            "colour": [("red", "green", "blue")[i % 3] for i in range(n)],
            "description": [f"a handsome item number {i} with a long description" for i in range(n)],
            "barcode": [f"{1000 + i}" for i in range(n)],
            "created": [datetime(2025, 1, 1 + i % 28) for i in range(n)],
        }
    )
    products["hazmat"] = products["hazmat"].astype(int)
    if not with_added:
        products = products.drop(columns="created")
    rows = [
        {"item": f"I{i:03d}", "kind": kind, "ok": int((i + k) % (k + 2) == 0), "wk": 1 + i % 2}
        for i in range(n)
        for k, kind in enumerate(("tube", "crate"))
    ]
    labels = pd.DataFrame(rows)
    if not with_week:
        labels = labels.drop(columns="wk")
    with duckdb.connect(str(path)) as con:
        con.register("p", products)
        con.register("l", labels)
        con.execute("CREATE TABLE catalogue AS SELECT * FROM p")
        con.execute("CREATE TABLE outcomes AS SELECT * FROM l")


def test_init_writes_a_config_whose_features_queries_and_types_match_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _shop(tmp_path / "shop.duckdb")
    code, out = _invoke(
        "init", "--table", "catalogue", "--label-table", "outcomes", "--week-column", "wk",
        "--set", "warehouse.path=shop.duckdb",
    )  # fmt: skip
    assert code == 0, out
    assert "wrote packwise.yaml: 60 products (catalogue, id item), 120 labels (outcomes)" in out
    text = (tmp_path / "packwise.yaml").read_text()
    cfg = load_config(tmp_path / "packwise.yaml")
    assert cfg.features.numeric == ["weight_g", "units"]
    assert cfg.features.boolean == ["fragile", "hazmat"]
    assert cfg.features.categorical == ["colour"] and cfg.features.text == "description"
    assert cfg.features.derived == []
    assert "# not a feature: barcode (60 distinct short strings" in text  # every choice has its comment
    assert cfg.inference.watermark_column == "created" and "p.created > $since" in cfg.inference.new_products_query
    # least often suitable first: crate ((i + 1) % 3 == 0, a third) before tube (i % 2 == 0, a half)
    assert cfg.package_type_names == ["crate", "tube"]
    assert str(cfg.warehouse.path) == "shop.duckdb"
    with duckdb.connect(str(tmp_path / "shop.duckdb"), read_only=True) as con:
        week1 = con.execute(cfg.warehouse.labels_query.replace("$week", "1")).df()
        products = con.execute(cfg.warehouse.products_query.replace("$week", "1")).df()
        inventory = con.execute(cfg.inference.inventory_query).df()
        weeks = con.execute(cfg.warehouse.label_weeks_query).df()
    assert list(week1.columns) == ["product_id", "package_type", "label"] and len(week1) == 60
    assert set(products["product_id"]) == set(week1["product_id"])
    assert len(inventory) == 60 and {"product_id", "weight_g", "colour", "created"} <= set(inventory.columns)
    assert sorted(weeks["week"].unique()) == [1, 2]
    code, out = _invoke(
        "init", "--table", "catalogue", "--label-table", "outcomes", "--set", "warehouse.path=shop.duckdb"
    )
    assert code == 2 and "packwise.yaml exists; pass --force" in out


def test_without_week_or_timestamp_columns_every_label_is_week_one_and_daily_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _shop(tmp_path / "shop.duckdb", with_week=False, with_added=False)
    code, out = _invoke("init", "-t", "catalogue", "-l", "outcomes", "--set", "warehouse.path=shop.duckdb")
    assert code == 0, out
    assert "no added_at column: monthly inference only" in out and "--week 1" in out
    cfg = load_config(tmp_path / "packwise.yaml")
    assert cfg.warehouse.label_weeks_query == "SELECT 1 AS week FROM outcomes"
    code, out = _invoke("infer", "-c", "packwise.yaml", "--mode", "daily")
    assert code == 2, out
    flat = " ".join(out.split())
    assert "daily inference: inference.new_products_query failed" in flat and "'added_at'" in flat
    assert "--mode monthly needs none" in flat and len(out.strip().splitlines()) == 1
    assert not (tmp_path / ".packwise" / "kfp").exists()  # refused before the pipeline started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "catalog", "-l", "outcomes"], "--table 'catalog' not found in the warehouse; tables there: "
                                              "catalogue, outcomes; did you mean 'catalogue'?"),
        (["-t", "catalogue", "-l", "outcome"], "did you mean 'outcomes'?"),
        (["-t", "catalogue", "-l", "outcomes", "--id-column", "itm"], "--id-column 'itm': table 'catalogue' has no "
                                                                      "such column"),
        (["-t", "catalogue", "-l", "outcomes", "--label-column", "kind"], "'kind' holds values other than 0 and 1"),
        (["-t", "catalogue", "-l", "outcomes", "--type-column", "oops"], "--type-column 'oops': table 'outcomes' has "
                                                                         "no such column; its columns: kind, ok, wk"),
        (["-t", "outcomes", "-l", "catalogue"], "pass --id-column"),
    ],
)  # fmt: skip
def test_init_errors_name_the_table_or_column_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    _shop(tmp_path / "shop.duckdb")
    code, out = _invoke("init", *args, "--set", "warehouse.path=shop.duckdb")
    assert code == 2, out
    assert message in " ".join(out.split()) and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "packwise.yaml").exists()


def test_init_without_a_warehouse_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _invoke("init", "-t", "a", "-l", "b")
    assert code == 2 and "no DuckDB warehouse at" in out and "--set warehouse.path=FILE" in out


def test_a_package_type_that_is_not_snake_case_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE p AS SELECT 'a' || i AS id, i * 1.5 AS size FROM range(10) t(i)")
        con.execute(
            "CREATE TABLE l AS SELECT 'a' || i AS id, 'Small box' AS package_type, 1 AS label FROM range(10) t(i)"
        )
    code, out = _invoke("init", "-t", "p", "-l", "l", "--set", "warehouse.path=w.duckdb")
    assert code == 2 and "package type 'Small box' is not lower_snake_case" in out


def test_feature_defaults_do_not_assume_the_synthetic_columns_once_a_config_names_its_own() -> None:
    own = FeatureConfig.model_validate({"numeric": ["alcohol", "hue"]})
    assert own.boolean == [] and own.categorical == [] and own.derived == []
    assert own.input_columns() == ["alcohol", "hue"]
    dims = FeatureConfig.model_validate({"numeric": ["length_cm", "width_cm", "height_cm"]})
    assert dims.derived == ["volume_cm3", "max_dim_cm", "min_dim_cm"]  # density also needs weight_kg
    assert FeatureConfig.model_validate({"categorical": ["colour"], "derived": []}).numeric == []
    assert "is_liquid" in FeatureConfig().boolean  # the embedded defaults still describe `packwise seed`
    cfg = load_config(None, ["features.numeric=[alcohol]"])
    assert cfg.features.boolean == [] and cfg.features.derived == []


def test_monthly_extract_needs_no_added_at_but_daily_does(tmp_path: Path) -> None:
    from packwise.config import InferenceConfig, WarehouseConfig
    from packwise.errors import DataValidationError
    from packwise.inference.steps import extract_products

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE products AS SELECT 'p' || i AS product_id, i * 1.0 AS size FROM range(20) t(i)")
    warehouse = WarehouseConfig(path=db)
    record = extract_products(warehouse, InferenceConfig(), tmp_path / "store", "monthly", "inference-monthly-1")
    assert record["n_products"] == 20 and record["watermark"] is None
    with pytest.raises(DataValidationError, match=r"daily inference: inference.new_products_query failed .*'added_at'"):
        from packwise.inference import check_daily_query
        from packwise.warehouse import open_warehouse

        with open_warehouse(warehouse, read_only=True) as wh:
            check_daily_query(wh, InferenceConfig())
    daily = InferenceConfig(new_products_query="SELECT * FROM products WHERE $since IS NOT NULL")
    with pytest.raises(DataValidationError, match=r"column 'added_at' is missing or empty in inference.new_products"):
        extract_products(warehouse, daily, tmp_path / "store", "daily", "inference-daily-1")


def test_the_daily_check_passes_a_products_table_with_added_at(tmp_path: Path) -> None:
    from packwise.config import InferenceConfig
    from packwise.errors import DataValidationError
    from packwise.inference import check_daily_query
    from packwise.warehouse.duckdb import DuckDBWarehouse

    with DuckDBWarehouse(tmp_path / "w.duckdb") as wh:
        wh.execute("CREATE TABLE products AS SELECT 'p1' AS product_id, TIMESTAMP '2026-01-01' AS added_at")
        check_daily_query(wh, InferenceConfig())  # the embedded defaults' query and column
        with pytest.raises(DataValidationError, match=r"returns no 'created'"):
            check_daily_query(wh, InferenceConfig(watermark_column="created"))
