"""The inference DAG end to end through kfp.local (subprocess runner), after a week-1 training run.

One seeded warehouse, registry and task cache for the module, as on a laptop: no champion yet (refused),
week-1 training, a monthly run over the whole inventory, the same run again, a run killed inside the
load transaction and run again (compared with a clean run on a copy of the warehouse), daily runs over
new products and over none, and every bad input of the issue, each stopping before anything is written.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from packwise.config import PackwiseConfig
from packwise.predictions import PREDICTION_RUNS, PREDICTIONS, read_watermark
from packwise.registry import Candidate, Status, open_registry
from packwise.run_summary import read_summary
from packwise.synthetic import add_products
from packwise.warehouse import open_warehouse
from packwise_pipelines.local import LocalRun, inference_run, training_run
from tests.conftest import make_config, seed

pytestmark = pytest.mark.pipeline

TYPES = ["own_container", "bag", "mailer", "box"]
N_PRODUCTS = 12_000
INFERENCE = {"shard_target_rows": 5_000, "batch_rows": 2_048}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inference") / "state"


@pytest.fixture(scope="module")
def cfg(root: Path) -> PackwiseConfig:
    config = make_config(root, inference=INFERENCE)
    seed(config, seed=11, n_products=N_PRODUCTS, weeks=4, labels_per_week=3_000)
    return config


@pytest.fixture(scope="module")
def trained(cfg: PackwiseConfig) -> PackwiseConfig:
    run = training_run(cfg, 1, run_id="week1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    return cfg


def _run(cfg: PackwiseConfig, mode: str, run_id: str, **kw: Any) -> tuple[LocalRun, dict[str, Any]]:
    run = inference_run(cfg, mode, run_id=run_id, **kw)
    summary = read_summary(cfg.storage.root, run.run_id)
    assert summary is not None, f"no summary written; see {run.log_path}"
    return run, summary


def _table(cfg: PackwiseConfig) -> pd.DataFrame:
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        if not wh.table_exists(PREDICTIONS):
            return pd.DataFrame()
        return wh.fetch_df(f"SELECT * FROM {PREDICTIONS} ORDER BY product_id, run_id").reset_index(drop=True)


def _current(cfg: PackwiseConfig) -> pd.DataFrame:
    table = _table(cfg)
    return table[table["is_current"]].reset_index(drop=True)


def _error(run: LocalRun) -> str:
    errors = [f"{e.label}: {e.error}" for e in run.events if e.state == "failed" and e.error]
    assert errors, f"no failed task event; see {run.log_path}"
    return errors[0]


def _executed(run: LocalRun) -> list[str]:
    return sorted(e.task for e in run.events if e.state in {"succeeded", "failed"})


def test_no_approved_model_stops_before_anything_is_written(cfg: PackwiseConfig) -> None:
    run, summary = _run(cfg, "monthly", "before-training")
    assert not run.succeeded
    error = _error(run)
    assert error.startswith("resolve-models: no Approved model for package types 'own_container', 'bag'"), error
    assert "packwise train" in error and "packwise registry approve" in error
    assert "\n" not in error
    assert _table(cfg).empty
    assert not summary["loaded"] and summary["pipeline_state"] == "FAILED"


def test_monthly_scores_the_whole_inventory_with_one_current_row_per_product(trained: PackwiseConfig) -> None:
    cfg = trained
    run, summary = _run(cfg, "monthly", "monthly-1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    current = _current(cfg)
    assert len(current) == N_PRODUCTS and current["product_id"].is_unique
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        inventory = wh.fetch_df("SELECT product_id FROM products ORDER BY product_id")
    assert current["product_id"].tolist() == inventory["product_id"].tolist()
    assert set(current["recommended_type"]) <= set(TYPES)
    registry = open_registry(cfg.registry)
    for t in TYPES:
        champion = registry.champion(t)
        assert champion is not None
        assert current[f"model_version_{t}"].eq(champion.version).all()
        assert current[f"prob_{t}"].between(0, 1).all()
    assert summary["n_products"] == N_PRODUCTS and summary["loaded"]
    assert sum(r["count"] for r in summary["package_types"]) == N_PRODUCTS
    assert sorted(e.label for e in run.events if e.task == "score-shard" and e.state == "succeeded") == [
        "score-shard (shard-00000)", "score-shard (shard-00001)", "score-shard (shard-00002)"
    ]  # fmt: skip


def test_the_same_run_twice_leaves_the_table_identical(trained: PackwiseConfig) -> None:
    cfg = trained
    before = _table(cfg)
    run, summary = _run(cfg, "monthly", "monthly-1")
    assert run.succeeded
    pd.testing.assert_frame_equal(_table(cfg), before)
    assert summary["already_loaded"] and not summary["loaded"]
    # live state is looked at again, and shard-products finds its shards (reused, not rewritten); everything
    # else, scoring included, comes from the cache
    assert _executed(run) == [
        "extract-products", "load-predictions", "notify-inference", "resolve-models", "shard-products"
    ]  # fmt: skip


def test_a_run_killed_during_the_load_and_run_again_equals_one_clean_run(
    trained: PackwiseConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = trained
    before = _table(cfg)
    clean_wh = tmp_path / "clean.duckdb"
    shutil.copy(cfg.warehouse.path, clean_wh)

    monkeypatch.setenv("PACKWISE_FAIL_TASK", "load-predictions/commit")
    failed, summary = _run(cfg, "monthly", "monthly-2")
    assert not failed.succeeded
    assert "load-predictions" in _error(failed)
    pd.testing.assert_frame_equal(_table(cfg), before)  # previous predictions intact
    assert not summary["loaded"]

    monkeypatch.delenv("PACKWISE_FAIL_TASK")
    resumed, _ = _run(cfg, "monthly", "monthly-2")
    assert resumed.succeeded, resumed.log_path.read_text()[-3000:]
    assert "score-shard" not in _executed(resumed)  # the scores came from the cache

    clean_cfg = make_config(cfg.storage.root, inference=INFERENCE, warehouse={"path": str(clean_wh)})
    clean, _ = _run(clean_cfg, "monthly", "monthly-2")
    assert clean.succeeded
    pd.testing.assert_frame_equal(_table(cfg), _table(clean_cfg))
    current = _current(cfg)
    assert len(current) == N_PRODUCTS and set(current["run_id"]) == {"monthly-2"}


def test_daily_scores_only_the_new_products(trained: PackwiseConfig) -> None:
    cfg = trained
    before = _table(cfg)
    with open_warehouse(cfg.warehouse) as wh:
        monthly_watermark = read_watermark(wh, "monthly")
        add_products(wh, 250, seed=5, added_at=datetime(2026, 3, 2, 9, 30))
    run, summary = _run(cfg, "daily", "daily-1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert summary["n_products"] == 250 and summary["since"] == monthly_watermark.isoformat()  # type: ignore[union-attr]
    after = _table(cfg)
    new = after[after["run_id"] == "daily-1"]
    assert len(new) == 250 and new["is_current"].all()
    assert not new["product_id"].isin(before["product_id"]).any()
    pd.testing.assert_frame_equal(after[after["run_id"] != "daily-1"].reset_index(drop=True), before)
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        assert read_watermark(wh, "daily") == datetime(2026, 3, 2, 9, 30)


def test_a_daily_run_with_no_new_products_succeeds_and_changes_nothing(trained: PackwiseConfig) -> None:
    cfg = trained
    before = _table(cfg)
    run, summary = _run(cfg, "daily", "daily-2")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert summary["n_products"] == 0 and summary["loaded"]
    assert summary["watermark_after"] == summary["watermark_before"] == "2026-03-02T09:30:00"
    pd.testing.assert_frame_equal(_table(cfg), before)
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        assert read_watermark(wh, "daily") == datetime(2026, 3, 2, 9, 30)
        ledger = wh.fetch_df(f"SELECT n_products FROM {PREDICTION_RUNS} WHERE run_id = 'daily-2'")
    assert ledger["n_products"].tolist() == [0]


def test_unseen_category_values_are_scored_and_counted(trained: PackwiseConfig) -> None:
    cfg = trained
    with open_warehouse(cfg.warehouse) as wh:
        add_products(wh, 40, seed=6, added_at=datetime(2026, 3, 3))
        wh.execute("UPDATE products SET category = 'space_equipment' WHERE added_at = TIMESTAMP '2026-03-03'")
    run, summary = _run(cfg, "daily", "daily-3")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert summary["n_products"] == 40
    assert summary["unseen"] == {"category": 40, "material": 0}
    assert len(_table(cfg).query("run_id == 'daily-3'")) == 40


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "SELECT * EXCLUDE (fragility) FROM products",
            "prepare-products: inventory: feature column 'fragility' is missing from products",
        ),
        (
            "SELECT * FROM products UNION ALL SELECT * FROM products WHERE product_id = 'P0000042'",
            "prepare-products: inventory: products has 1 duplicate product_id rows (e.g. 'P0000042')",
        ),
        (
            "SELECT * REPLACE (CAST(round(weight_kg) AS VARCHAR) AS weight_kg) FROM products",
            "prepare-products: inventory: column 'weight_kg' in products has type",
        ),
    ],
    ids=["missing-column", "duplicate-ids", "wrong-type"],
)
def test_bad_inventory_stops_before_anything_is_written(trained: PackwiseConfig, query: str, expected: str) -> None:
    cfg = make_config(trained.storage.root, inference={**INFERENCE, "inventory_query": query})
    before = _table(cfg)
    run, summary = _run(cfg, "monthly", f"bad-{abs(hash(query)) % 10_000}")
    assert not run.succeeded
    error = _error(run)
    assert error.startswith(expected), error
    assert "inference.inventory_query" in error and "\n" not in error
    pd.testing.assert_frame_equal(_table(cfg), before)
    assert not summary["loaded"]


def test_pinned_versions(trained: PackwiseConfig) -> None:
    cfg = trained
    registry = open_registry(cfg.registry)
    champion = registry.champion("mailer")
    assert champion is not None
    model_file = registry.download_model("mailer", champion.version, cfg.storage.root / "scratch")
    rejected = registry.register(Candidate(
        package_type="mailer", model_file=model_file, status=Status.REJECTED, candidate_key="test-rejected",
        data_fingerprint="f", model_type="xgboost", metrics={}, label_stats={}, gate_report="", reason="test",
        who="test", run_id="test",
    ))  # fmt: skip
    before = _table(cfg)

    run, _ = _run(cfg, "daily", "pin-missing", pinned_models={"mailer": 99})
    assert not run.succeeded
    assert _error(run).startswith("resolve-models: no mailer model version 99; run `packwise registry list")

    run, _ = _run(cfg, "daily", "pin-rejected", pinned_models={"mailer": rejected.version})
    assert not run.succeeded
    error = _error(run)
    assert f"--model mailer={rejected.version}: that version is Rejected" in error
    assert f"packwise registry approve mailer {rejected.version}" in error
    pd.testing.assert_frame_equal(_table(cfg), before)

    with open_warehouse(cfg.warehouse) as wh:
        add_products(wh, 20, seed=7, added_at=datetime(2026, 3, 4))
    run, summary = _run(cfg, "daily", "pin-ok", pinned_models={"mailer": champion.version})
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert summary["models_pinned"] == ["mailer"] and summary["n_products"] == 20


def test_cli_infer_prints_the_summary_table(trained: PackwiseConfig) -> None:
    from typer.testing import CliRunner

    from packwise_app.cli import app

    cfg = trained
    with open_warehouse(cfg.warehouse) as wh:
        add_products(wh, 30, seed=8, added_at=datetime(2026, 3, 5))
    args = ["infer", "--mode", "daily", "--run-id", "cli-daily"]
    for key, value in {
        "storage.root": cfg.storage.root,
        "warehouse.path": cfg.warehouse.path,
        "inference.shard_target_rows": INFERENCE["shard_target_rows"],
    }.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for text in ("30 products scored", "share", "change vs previous run", "own_container", "daily watermark"):
        assert text in result.output, result.output
    bad = CliRunner().invoke(app, ["infer", "--mode", "weekly"])
    assert bad.exit_code == 2 and "'weekly' is not one of" in bad.output
    bad = CliRunner().invoke(app, ["infer", "--mode", "daily", "--model", "crate=2"])
    assert bad.exit_code == 2 and "'crate' is not a configured type" in bad.output


def test_a_run_after_its_shards_were_pruned_cuts_them_again(trained: PackwiseConfig) -> None:
    # `packwise gc` on a bucket cannot see a cluster's KFP cache, so it may delete an extract directory
    # (shards included) that cached tasks were made from. shard-products never comes from the cache: a later
    # run over the same products cuts its shards again, even when scoring is not a cache hit (here the
    # sagemaker section changed: an input of score-shard, not of shard-products).
    cfg = trained
    first, _ = _run(cfg, "monthly", "pruned-1")
    assert first.succeeded, first.log_path.read_text()[-3000:]
    extracts = cfg.storage.root / "inference" / "extracts"
    used = sorted(p.name for p in extracts.iterdir() if not p.name.startswith("."))
    shutil.rmtree(extracts)
    warehouse = {"path": str(cfg.warehouse.path)}
    changed = make_config(cfg.storage.root, inference=INFERENCE, warehouse=warehouse, sagemaker={"prefix": "other"})
    run, summary = _run(changed, "monthly", "pruned-2")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    executed = _executed(run)
    assert "shard-products" in executed and executed.count("score-shard") == 3, executed
    assert summary["loaded"] and summary["n_products"] == len(_current(cfg))
    assert set(_current(cfg)["run_id"]) == {"pruned-2"}
    assert any((extracts / name).is_dir() for name in used)  # the same extract, cut again
