"""Training components tested twice, a fixed pair per component: as plain Python (the component's function
with artifact objects on local paths) and through kfp.local's subprocess runner (one session per module).

The two legs register under different model name prefixes, so each leg's register sees its own registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl, local

from packwise.config import GateConfig, PackwiseConfig
from packwise.lineage import read_run_record
from packwise.registry import Status, open_registry
from packwise.training import EvaluationResult, TrainSummary
from packwise_components import training as components
from packwise_components.images import resolve_images
from packwise_components.training import build_training_components
from tests.conftest import make_config, seed

COMPONENTS = build_training_components(resolve_images())
PACKAGE_TYPE = "box"


def _evidence(candidate_auc: float, champion_auc: float | None) -> tuple[str, str]:
    summary = TrainSummary(
        package_type="bag",
        model_type="xgboost",
        candidate_key="key",
        data_fingerprint="fp",
        label_count=2000,
        positive_rate=0.4,
        n_features=30,
        seconds=1.0,
    )

    def scores(auc: float) -> dict:
        return {"auc": auc, "pr_auc": auc - 0.05, "log_loss": 0.35}

    evaluation = EvaluationResult(
        package_type="bag",
        candidate=scores(candidate_auc),
        champion=None if champion_auc is None else scores(champion_auc),
        champion_version=None if champion_auc is None else 3,
        champion_label_stats=None if champion_auc is None else {"count": 1900, "positive_rate": 0.4},
    )
    return summary.model_dump_json(), evaluation.model_dump_json()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    config = make_config(tmp_path_factory.mktemp("components") / "state", model={"num_boost_round": 20})
    seed(config, seed=2, n_products=1_500, weeks=1, labels_per_week=600)
    return config


@pytest.fixture(scope="module")
def runner(cfg: PackwiseConfig) -> Iterator[Path]:
    """One kfp.local session for the module's runner tests."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(cfg.storage.root / "kfp"))
    yield cfg.storage.root


def _artifact(kind: type[Any], path: Path, **metadata: Any) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return kind(name=path.stem, uri=str(path), metadata=dict(metadata))


@pytest.fixture(scope="module")
def plain_split(cfg: PackwiseConfig) -> dict[str, Any]:
    """extract and split as plain Python: the snapshot and the two split artifacts."""
    out = cfg.storage.root / "plain"
    snapshot = _artifact(dsl.Dataset, out / "snapshot.json")
    fingerprint, snapshot_dir = components.extract(
        cfg.section_json("warehouse"), str(cfg.storage.root), 1, "plain-run", "job", snapshot
    )
    components.validate(snapshot_dir, cfg.section_json("features"), cfg.package_type_names, cfg.section_json("model"))
    train_split = _artifact(dsl.Dataset, out / "train.parquet")
    validation_split = _artifact(dsl.Dataset, out / "validation.parquet")
    summary = components.split(
        snapshot_dir, cfg.section_json("split"), cfg.package_type_names, train_split, validation_split
    )
    assert json.loads(summary)["fingerprint"] == fingerprint == train_split.metadata["fingerprint"]
    return {
        "train": train_split,
        "validation": validation_split,
        "fingerprint": fingerprint,
        "snapshot_dir": snapshot_dir,
    }


def test_compare_as_plain_python(tmp_path: Path) -> None:
    train_json, evaluation_json = _evidence(0.90, 0.95)
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={})
    outcome, decision = components.compare(train_json, evaluation_json, GateConfig().model_dump_json(), report)
    assert outcome == "reject"
    assert json.loads(decision)["status"] == "Rejected"
    assert "auc_drop_abs" in (tmp_path / "report.md").read_text()


def test_compare_through_the_local_runner(runner: Path) -> None:
    train_json, evaluation_json = _evidence(0.95, 0.94)
    task = COMPONENTS.compare(
        train_summary=train_json, evaluation=evaluation_json, gate_json=GateConfig().model_dump_json()
    )
    assert task.outputs["outcome"] == "approve"
    assert "approved" in Path(task.outputs["report"].path).read_text()


def test_extract_through_the_local_runner(cfg: PackwiseConfig, runner: Path) -> None:
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


def _register_and_check(cfg: PackwiseConfig, prefix: str, result: str | None) -> Any:
    """The first model of a type becomes its champion; returns the champion."""
    if result is not None:
        assert json.loads(result) == {"package_type": PACKAGE_TYPE, "version": 1, "status": "Approved", "reused": False}
    registry = open_registry(cfg.registry.model_copy(update={"model_name_prefix": prefix}))
    champion = registry.champion(PACKAGE_TYPE)
    assert champion is not None and champion.version == 1 and champion.status == Status.APPROVED
    assert champion.model_type == "xgboost" and champion.metrics["auc"] > 0.5
    return champion


def test_train_evaluate_compare_register_as_plain_python(
    cfg: PackwiseConfig, plain_split: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "plain"
    model = _artifact(dsl.Model, out / "model.tar.gz")
    summary = components.train(
        plain_split["train"],
        plain_split["validation"],
        PACKAGE_TYPE,
        cfg.section_json("features"),
        cfg.section_json("split"),
        cfg.section_json("model"),
        cfg.section_json("compute"),
        cfg.section_json("sagemaker"),
        model,
    )
    trained = TrainSummary.model_validate_json(summary)
    assert trained.package_type == PACKAGE_TYPE and trained.data_fingerprint == plain_split["fingerprint"]
    assert model.metadata["labels"] == trained.label_count > 100 and Path(model.path).is_file()
    assert "sagemaker_training_job" not in model.metadata, "local compute runs no job"

    metrics = _artifact(dsl.Metrics, out / "metrics")
    classification = _artifact(dsl.ClassificationMetrics, out / "classification")
    prefix = "plain"
    registry_json = cfg.registry.model_copy(update={"model_name_prefix": prefix}).model_dump_json()
    evaluation = components.evaluate(
        model,
        plain_split["validation"],
        PACKAGE_TYPE,
        {PACKAGE_TYPE: 0.5},
        registry_json,
        cfg.section_json("compute"),
        cfg.section_json("sagemaker"),
        str(cfg.storage.root),
        cfg.section_json("split"),
        cfg.section_json("gate"),
        metrics,
        classification,
    )
    evaluated = EvaluationResult.model_validate_json(evaluation)
    assert evaluated.champion is None and 0.5 < evaluated.candidate["auc"] <= 1.0
    assert metrics.metadata["candidate_auc"] == pytest.approx(evaluated.candidate["auc"], abs=1e-6)

    report = _artifact(dsl.Markdown, out / "report.md")
    outcome, decision = components.compare(summary, evaluation, cfg.section_json("gate"), report)
    assert outcome == "approve"
    config = (*(cfg.section_json(s) for s in ("features", "model", "split")), 1, str(cfg.storage.root))
    result = components.register(model, plain_split["train"], summary, evaluation, decision, registry_json, *config)
    champion = _register_and_check(cfg, prefix, result)
    assert champion.candidate_key == trained.candidate_key
    again = components.register(model, plain_split["train"], summary, evaluation, decision, registry_json, *config)
    assert json.loads(again) == {"package_type": PACKAGE_TYPE, "version": 1, "status": "Approved", "reused": True}


def test_train_evaluate_compare_register_through_the_local_runner(cfg: PackwiseConfig, runner: Path) -> None:
    """kfp.local runs a task with artifact inputs only inside a pipeline: the chain is one (the runner
    checks every task's inputs and outputs against its component's interface); the registry shows the result."""
    prefix = "runner"
    registry_json = cfg.registry.model_copy(update={"model_name_prefix": prefix}).model_dump_json()

    @dsl.pipeline(name="component-chain")
    def chain():  # type: ignore[no-untyped-def]  # kfp reads the annotations (none: no outputs)
        extract_task = COMPONENTS.extract(
            warehouse_json=cfg.section_json("warehouse"),
            storage_root=str(cfg.storage.root),
            week=1,
            run_id="runner-run",
            job_id="ignored",
        )
        split_task = COMPONENTS.split(
            snapshot_dir=extract_task.outputs["snapshot_dir"],
            split_json=cfg.section_json("split"),
            package_types=cfg.package_type_names,
        )
        train_task = COMPONENTS.train(
            train_split=split_task.outputs["train_split"],
            validation_split=split_task.outputs["validation_split"],
            package_type=PACKAGE_TYPE,
            features_json=cfg.section_json("features"),
            split_json=cfg.section_json("split"),
            model_json=cfg.section_json("model"),
            compute_json=cfg.section_json("compute"),
            sagemaker_json=cfg.section_json("sagemaker"),
        )
        evaluate_task = COMPONENTS.evaluate(
            model=train_task.outputs["model"],
            validation_split=split_task.outputs["validation_split"],
            package_type=PACKAGE_TYPE,
            thresholds={PACKAGE_TYPE: 0.5},
            registry_json=registry_json,
            compute_json=cfg.section_json("compute"),
            sagemaker_json=cfg.section_json("sagemaker"),
            storage_root=str(cfg.storage.root),
            split_json=cfg.section_json("split"),
            gate_json=cfg.section_json("gate"),
        )
        compare_task = COMPONENTS.compare(
            train_summary=train_task.outputs["Output"],
            evaluation=evaluate_task.outputs["Output"],
            gate_json=cfg.section_json("gate"),
        )
        COMPONENTS.register(
            model=train_task.outputs["model"],
            train_split=split_task.outputs["train_split"],
            train_summary=train_task.outputs["Output"],
            evaluation=evaluate_task.outputs["Output"],
            decision=compare_task.outputs["decision"],
            registry_json=registry_json,
            features_json=cfg.section_json("features"),
            model_json=cfg.section_json("model"),
            split_json=cfg.section_json("split"),
            week=1,
            storage_root=str(cfg.storage.root),
        )

    chain()
    _register_and_check(cfg, prefix, None)


def test_register_files_a_rejected_decision_as_rejected_never_as_champion(
    cfg: PackwiseConfig, plain_split: dict[str, Any], tmp_path: Path
) -> None:
    """One register task for every outcome: the decision's outcome, not the wiring, decides the status."""
    model = _artifact(dsl.Model, tmp_path / "model.tar.gz")
    summary = components.train(
        plain_split["train"],
        plain_split["validation"],
        "bag",
        cfg.section_json("features"),
        cfg.section_json("split"),
        cfg.section_json("model"),
        cfg.section_json("compute"),
        cfg.section_json("sagemaker"),
        model,
    )
    evaluation = EvaluationResult(
        package_type="bag",
        candidate={"auc": 0.70, "pr_auc": 0.6, "log_loss": 0.6},
        champion={"auc": 0.95, "pr_auc": 0.9, "log_loss": 0.2},
        champion_version=None,
        champion_label_stats={"count": 600, "positive_rate": 0.4},
    ).model_dump_json()
    report = _artifact(dsl.Markdown, tmp_path / "report.md")
    outcome, decision = components.compare(summary, evaluation, cfg.section_json("gate"), report)
    assert outcome == "reject"
    registry_config = cfg.registry.model_copy(update={"model_name_prefix": "rejected"})
    result = json.loads(
        components.register(
            model,
            plain_split["train"],
            summary,
            evaluation,
            decision,
            registry_config.model_dump_json(),
            *(cfg.section_json(s) for s in ("features", "model", "split")),
            1,
            str(cfg.storage.root),
        )
    )
    assert result["status"] == "Rejected" and not result["reused"]
    assert open_registry(registry_config).champion("bag") is None
