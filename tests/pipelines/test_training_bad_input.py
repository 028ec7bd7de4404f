"""Bad input stops the training run before any training, with one line, and the registry untouched.

Week 1 is trained once first, so every case also proves the existing champions stay as they were.
Each case runs `packwise train` as a user would (through the CLI), with the bad input injected the way
it happens in production: a warehouse query that returns the wrong thing, or a bad config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from packwise.config import DEFAULT_LABELS_SQL, DEFAULT_PRODUCTS_SQL, PackwiseConfig
from packwise.registry import open_registry
from packwise_app.cli import app
from packwise_pipelines.local import training_run
from tests.conftest import make_config, seed

pytestmark = pytest.mark.pipeline

PRODUCT_COLUMNS = (
    "product_id, title, category, material, length_cm, width_cm, height_cm, weight_kg, fragility, price, "
    "is_liquid, has_battery, added_at"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    cfg = make_config(tmp_path_factory.mktemp("bad-input") / "state")
    seed(cfg, seed=5, n_products=5_000, weeks=2, labels_per_week=1_500)
    run = training_run(cfg, 1, run_id="baseline")
    assert run.succeeded, run.log_path
    return cfg


def _write_config(cfg: PackwiseConfig, path: Path, **overrides: Any) -> Path:
    data: dict[str, Any] = {
        "storage": {"root": str(cfg.storage.root)},
        "warehouse": {"path": str(cfg.warehouse.path)},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(data))
    return path


def _snapshot_of_registry(cfg: PackwiseConfig) -> list[tuple[str, int, str]]:
    registry = open_registry(cfg.registry)
    return sorted((v.package_type, v.version, str(v.status)) for v in registry.list_versions())


def _train(config_path: Path, *extra: str) -> Any:
    return CliRunner().invoke(app, ["train", "--week", "2", "--config", str(config_path), *extra])


def _products_sql(select: str) -> str:
    return DEFAULT_PRODUCTS_SQL.replace("SELECT p.*", f"SELECT {select}")


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "missing feature column": (
        {"warehouse": {"products_query": _products_sql(PRODUCT_COLUMNS.replace(" weight_kg,", ""))}},
        "'weight_kg' is missing",
    ),
    "column of the wrong type": (
        {
            "warehouse": {
                "products_query": _products_sql(
                    PRODUCT_COLUMNS.replace(" weight_kg,", " CAST(weight_kg AS VARCHAR) AS weight_kg,")
                )
            }
        },
        "'weight_kg'",
    ),
    "NaN label values": (
        {
            "warehouse": {
                "labels_query": DEFAULT_LABELS_SQL.replace(
                    "SELECT product_id, package_type, label",
                    "SELECT product_id, package_type, CASE WHEN product_id LIKE '%7' THEN NULL ELSE label END AS label",
                )
            }
        },
        "label",
    ),
    "unknown label values": (
        {
            "warehouse": {
                "labels_query": DEFAULT_LABELS_SQL.replace(
                    "SELECT product_id, package_type, label",
                    "SELECT product_id, package_type, CASE WHEN product_id LIKE '%3' THEN 2 ELSE label END AS label",
                )
            }
        },
        "label",
    ),
    "duplicate product ids": (
        {
            "warehouse": {
                "products_query": f"SELECT * FROM ({DEFAULT_PRODUCTS_SQL})\n"
                "UNION ALL (SELECT * FROM products WHERE product_id IN ('P0000001', 'P0000002'))"
            }
        },
        "duplicate",
    ),
    "negative dimensions": (
        {
            "warehouse": {
                "products_query": _products_sql(
                    "p.* REPLACE (CASE WHEN p.product_id LIKE '%1' THEN -p.height_cm ELSE p.height_cm END AS height_cm)"
                )
            }
        },
        "column 'height_cm' in products has",
    ),
    "infinite dimensions": (
        {
            "warehouse": {
                "products_query": _products_sql(
                    "p.* REPLACE (CASE WHEN p.product_id LIKE '%2' THEN 'inf'::DOUBLE "
                    "ELSE p.length_cm END AS length_cm)"
                )
            }
        },
        "infinite values",
    ),
    "empty snapshot": (
        {"warehouse": {"products_query": "SELECT * FROM products WHERE false AND $week > 0"}},
        "no rows",
    ),
    "a package type whose labels are all one class": (
        {
            "warehouse": {
                "labels_query": DEFAULT_LABELS_SQL.replace(
                    "SELECT product_id, package_type, label",
                    "SELECT product_id, package_type, CASE WHEN package_type = 'bag' THEN 1 ELSE label END AS label",
                )
            }
        },
        "'bag'",
    ),
    "a configured package type with no labels": (
        {
            "package_types": [
                {"name": n} for n in ("own_container", "bag", "padded_mailer", "mailer", "box")
            ]
        },
        "'padded_mailer'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_stops_before_training(trained: PackwiseConfig, tmp_path: Path, case: str) -> None:
    overrides, expected = CASES[case]
    before = _snapshot_of_registry(trained)
    result = _train(_write_config(trained, tmp_path / "packwise.yaml", **overrides))
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
    assert expected.lower() in error_lines[0].lower(), error_lines[0]
    assert "Traceback" not in result.output
    assert "train (" not in result.output, "training must not start"
    assert _snapshot_of_registry(trained) == before


@pytest.mark.parametrize(
    ("overrides", "extra", "expected"),
    [
        ({"splt": {"train_ratio": 0.5}}, [], "unknown key 'splt'"),
        ({"split": {"train_ratio": 0.5, "sed": 3}}, [], "unknown key 'split.sed'"),
        ({}, ["--set", "split.train_ratio=1.5"], "split.train_ratio"),
        ({}, ["--set", "split.train_ratio=0"], "split.train_ratio"),
        ({"model": {"type": "lgbm"}}, [], "unknown model type 'lgbm'"),
    ],
)
def test_bad_config_is_one_line_before_anything_runs(
    trained: PackwiseConfig, tmp_path: Path, overrides: dict[str, Any], extra: list[str], expected: str
) -> None:
    before = _snapshot_of_registry(trained)
    runs_before = sorted((trained.storage.root / "runs").iterdir())
    result = _train(_write_config(trained, tmp_path / "packwise.yaml", **overrides), *extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert expected in lines[0]
    assert sorted((trained.storage.root / "runs").iterdir()) == runs_before, "nothing ran"
    assert _snapshot_of_registry(trained) == before
