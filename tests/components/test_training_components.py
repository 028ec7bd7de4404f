"""Components tested twice: as plain Python (their function) and through kfp.local's subprocess runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl, local

from packwise.config import GateConfig
from packwise.lineage import read_run_record
from packwise.training import EvaluationResult, TrainSummary
from packwise_components.images import resolve_images
from packwise_components.training import build_training_components, compare
from tests.conftest import make_config, seed

COMPONENTS = build_training_components(resolve_images())


def _evidence(candidate_auc: float, champion_auc: float | None) -> tuple[str, str]:
    summary = TrainSummary("bag", "xgboost", "key", "fp", 2000, 0.4, 30, 1.0)

    def scores(auc: float) -> dict:
        return {"auc": auc, "pr_auc": auc - 0.05, "log_loss": 0.35}

    evaluation = EvaluationResult(
        package_type="bag",
        candidate=scores(candidate_auc),
        champion=None if champion_auc is None else scores(champion_auc),
        champion_version=None if champion_auc is None else 3,
        champion_label_stats=None if champion_auc is None else {"count": 1900, "positive_rate": 0.4},
    )
    return summary.to_json(), evaluation.to_json()


def test_compare_as_plain_python(tmp_path: Path) -> None:
    train_json, evaluation_json = _evidence(0.90, 0.95)
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={})
    outcome, decision = compare(train_json, evaluation_json, GateConfig().model_dump_json(), report)
    assert outcome == "reject"
    assert json.loads(decision)["status"] == "Rejected"
    assert "auc_drop_abs" in (tmp_path / "report.md").read_text()


@pytest.fixture
def local_runner(tmp_path: Path) -> Path:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    return tmp_path


def test_compare_through_the_local_runner(local_runner: Path) -> None:
    train_json, evaluation_json = _evidence(0.95, 0.94)
    task = COMPONENTS.compare(
        train_summary=train_json, evaluation=evaluation_json, gate_json=GateConfig().model_dump_json()
    )
    assert task.outputs["outcome"] == "approve"
    assert "approved" in Path(task.outputs["report"].path).read_text()


def test_extract_through_the_local_runner(local_runner: Path) -> None:
    cfg = make_config(local_runner / "state")
    seed(cfg, seed=2, n_products=1_500, weeks=1, labels_per_week=500)
    task = COMPONENTS.extract(
        warehouse_json=cfg.section_json("warehouse"),
        storage_root=str(cfg.storage.root),
        week=1,
        run_id="component-test",
        job_id="ignored",
    )
    fingerprint, snapshot_dir = task.outputs["fingerprint"], task.outputs["snapshot_dir"]
    assert Path(snapshot_dir).name == fingerprint
    assert (Path(snapshot_dir) / "labels.parquet").exists()
    record = read_run_record(cfg.storage.root, "component-test")
    assert record is not None and record["fingerprint"] == fingerprint and record["week"] == 1
