"""Both pipelines' components as plain Python with storage.root on an object store (moto's S3 server).

Each call runs as a task on a cluster would: in its own empty working directory, with its own empty temporary
directory, sharing nothing with the other calls but KFP artifacts (the artifact objects passed along), the
bucket and the services (the warehouse and the registry, files in a `services` directory here as PostgreSQL and
an MLflow server would be on a cluster). Afterwards the bucket holds the snapshots, extracts, shards, model
copies and run records, and no task left a file in its working or temporary directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

from packwise.config import PackwiseConfig, parse_config
from packwise.lineage import read_run_record
from packwise.predictions import PREDICTIONS
from packwise.training import EvaluationResult, TrainSummary
from packwise.warehouse import open_warehouse
from packwise_components import inference as inference_components
from packwise_components import training as components
from tests.conftest import seed
from tests.s3_server import S3Server

PREFIX = "packwise/state"
TYPES = [{"name": "bag", "threshold": 0.5}, {"name": "box", "threshold": 0.5}]


class Tasks:
    """Runs each call as its own task: fresh empty cwd and TMPDIR, both checked empty afterwards."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    @contextmanager
    def task(self, name: str) -> Iterator[None]:
        self.count += 1
        home = self.base / "tasks" / f"{self.count:02d}-{name}"
        cwd, tmp = home / "cwd", home / "tmp"
        cwd.mkdir(parents=True)
        tmp.mkdir()
        before, saved = Path.cwd(), tempfile.tempdir
        os.chdir(cwd)
        tempfile.tempdir = str(tmp)
        try:
            yield
        finally:
            os.chdir(before)
            tempfile.tempdir = saved
        assert list(cwd.rglob("*")) == [], f"{name} wrote into its working directory"
        assert list(tmp.rglob("*")) == [], f"{name} left files in its temporary directory"

    def artifact(self, kind: type[Any], name: str, **metadata: Any) -> Any:
        """An output artifact on a path of its own (the KFP artifact channel)."""
        path = self.base / "artifacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return kind(name=path.stem, uri=str(path), metadata=dict(metadata))


@pytest.fixture(scope="module")
def world(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[PackwiseConfig, Path]:
    base = tmp_path_factory.mktemp("object-store")
    services = base / "services"
    services.mkdir()
    config = parse_config(
        {
            "storage": {"root": f"s3://{s3.bucket}/{PREFIX}", "local_dir": str(base / "workspace")},
            "warehouse": {"path": str(services / "warehouse.duckdb")},
            "registry": {
                "tracking_uri": f"sqlite:///{services / 'mlflow.db'}",
                "artifact_root": (services / "mlartifacts").as_uri(),
            },
            "package_types": TYPES,
            "model": {"num_boost_round": 15},
            "inference": {"shard_target_rows": 500, "batch_rows": 1_024},
        },
        "test config",
    ).resolved()
    seed(config, seed=5, n_products=900, weeks=2, labels_per_week=500)
    return config, base


def _train_week(cfg: PackwiseConfig, tasks: Tasks, week: int, run_id: str) -> dict[str, Any]:
    root = str(cfg.storage.root)
    with tasks.task("extract"):
        snapshot = tasks.artifact(dsl.Dataset, f"{run_id}/snapshot")
        fingerprint, snapshot_dir = components.extract(
            cfg.section_json("warehouse"), root, week, run_id, "job", snapshot
        )
    assert snapshot_dir == f"{root}/snapshots/{fingerprint}"
    with tasks.task("validate"):
        stats = json.loads(
            components.validate(
                snapshot_dir, cfg.section_json("features"), cfg.package_type_names, cfg.section_json("model")
            )
        )
    assert stats["n_products"] > 0
    with tasks.task("split"):
        train_split = tasks.artifact(dsl.Dataset, f"{run_id}/train")
        validation_split = tasks.artifact(dsl.Dataset, f"{run_id}/validation")
        components.split(snapshot_dir, cfg.section_json("split"), cfg.package_type_names, train_split, validation_split)
    assert train_split.metadata["fingerprint"] == fingerprint
    evaluations = {}
    for package_type in cfg.package_type_names:
        with tasks.task(f"train-{package_type}"):
            model = tasks.artifact(dsl.Model, f"{run_id}/{package_type}/model")
            summary = components.train(
                train_split,
                validation_split,
                package_type,
                *(cfg.section_json(s) for s in ("features", "split", "model", "compute", "sagemaker")),
                model,
            )
        with tasks.task(f"evaluate-{package_type}"):
            evaluation = components.evaluate(
                model,
                validation_split,
                package_type,
                {package_type: 0.5},
                cfg.section_json("registry"),
                cfg.section_json("compute"),
                cfg.section_json("sagemaker"),
                root,
                cfg.section_json("split"),
                cfg.section_json("gate"),
                tasks.artifact(dsl.Metrics, f"{run_id}/{package_type}/metrics"),
                tasks.artifact(dsl.ClassificationMetrics, f"{run_id}/{package_type}/classification"),
            )
        evaluations[package_type] = EvaluationResult.model_validate_json(evaluation)
        with tasks.task(f"compare-{package_type}"):
            report = tasks.artifact(dsl.Markdown, f"{run_id}/{package_type}/report")
            _, decision = components.compare(summary, evaluation, cfg.section_json("gate"), report)
        with tasks.task(f"register-{package_type}"):
            components.register(
                model,
                train_split,
                summary,
                evaluation,
                decision,
                cfg.section_json("registry"),
                *(cfg.section_json(s) for s in ("features", "model", "split")),
                week,
                root,
            )
        assert TrainSummary.model_validate_json(summary).data_fingerprint == fingerprint
    with tasks.task("notify"):
        status = dsl.PipelineTaskFinalStatus("SUCCEEDED", "job", "train", None, None)
        notified = json.loads(
            components.notify(
                root,
                run_id,
                "job",
                cfg.section_json("registry"),
                cfg.section_json("notify"),
                cfg.package_type_names,
                *(cfg.section_json(s) for s in ("features", "split", "model")),
                status,
            )
        )
    return {"fingerprint": fingerprint, "evaluations": evaluations, "summary": notified}


def test_both_pipelines_through_the_object_store(
    world: tuple[PackwiseConfig, Path], s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, base = world
    tasks = Tasks(base)
    root = str(cfg.storage.root)

    week1 = _train_week(cfg, tasks, 1, "train-1")
    fp1 = week1["fingerprint"]
    assert [row["decision"] for row in week1["summary"]["package_types"]] == ["Approved", "Approved"]
    assert s3.keys(f"{PREFIX}/snapshots/") == [
        f"{PREFIX}/snapshots/{fp1}/{name}" for name in ("labels.parquet", "manifest.json", "products.parquet")
    ]
    assert read_run_record(root, "train-1.summary") == week1["summary"]
    assert json.loads(s3.read(f"{PREFIX}/runs/train-1.json"))["snapshot_dir"] == f"{root}/snapshots/{fp1}"

    # week 2: the champion's snapshot (week 1's) is staged in from the bucket for the label-quality criteria
    week2 = _train_week(cfg, tasks, 2, "train-2")
    assert week2["fingerprint"] != fp1
    for evaluation in week2["evaluations"].values():
        assert evaluation.champion_version == 1 and evaluation.label_quality is not None

    run_id, types = "infer-monthly", cfg.package_type_names
    with tasks.task("extract-products"):
        products = tasks.artifact(dsl.Dataset, f"{run_id}/products")
        extract_dir, since, watermark, n_products = inference_components.extract_products(
            "monthly", cfg.section_json("warehouse"), cfg.section_json("inference"), root, run_id, "job", products
        )
    assert extract_dir.startswith(f"{root}/inference/extracts/") and n_products == 900
    with tasks.task("resolve-models"):
        thresholds = {p.name: p.threshold for p in cfg.package_types}
        models_json = inference_components.resolve_models(
            cfg.section_json("registry"), types, thresholds, {}, root, run_id, "job"
        )
    assert all(m["path"].startswith(f"{root}/inference/models/") for m in json.loads(models_json)["models"].values())
    with tasks.task("prepare-products"):
        plan = tasks.artifact(dsl.Artifact, f"{run_id}/plan")
        inference_components.prepare_products(extract_dir, models_json, "monthly", cfg.section_json("inference"), plan)
    with tasks.task("shard-products"):
        shards = inference_components.shard_products(plan, cfg.section_json("inference"))
    assert len(shards) == 2 and all(s.startswith(f"{extract_dir}/shards-") for s in shards)
    # shard-products is never cached: re-run, it finds its shards from the products' footer and the shards'
    # manifest, and downloads nothing
    from packwise.storage import TaskStorage

    staged: list[str] = []
    real_stage_in = TaskStorage.stage_in

    def stage_in(self: TaskStorage, uri: str | Path, marker: str | None = None) -> Path:
        staged.append(str(uri))
        return real_stage_in(self, uri, marker)

    monkeypatch.setattr(TaskStorage, "stage_in", stage_in)
    with tasks.task("shard-products (again)"):
        assert inference_components.shard_products(plan, cfg.section_json("inference")) == shards
    monkeypatch.undo()
    assert staged == []
    scored = []
    for index, shard in enumerate(shards):
        with tasks.task(f"score-shard-{index}"):
            out = tasks.artifact(dsl.Dataset, f"{run_id}/scored-{index}")
            inference_components.score_shard(
                shard,
                plan,
                cfg.section_json("inference"),
                cfg.section_json("compute"),
                cfg.section_json("sagemaker"),
                out,
            )
        scored.append(out)
    with tasks.task("load-predictions"):
        loaded = json.loads(
            inference_components.load_predictions(
                plan,
                scored,
                "monthly",
                since,
                watermark,
                cfg.section_json("warehouse"),
                cfg.section_json("inference"),
                root,
                run_id,
                "job",
            )
        )
    assert loaded["loaded"] and loaded["n_products"] == 900
    with tasks.task("notify-inference"):
        status = dsl.PipelineTaskFinalStatus("SUCCEEDED", "job", "score-and-load", None, None)
        summary = json.loads(
            inference_components.notify_inference(root, run_id, "job", cfg.section_json("notify"), types, status)
        )
    assert summary["loaded"] and summary["n_products"] == 900

    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        table = wh.fetch_df(f"SELECT product_id FROM {PREDICTIONS} WHERE run_id = '{run_id}'")
    assert len(table) == 900 and table["product_id"].is_unique

    extract_key = extract_dir[len(f"s3://{s3.bucket}/") :]
    keys = s3.keys(f"{PREFIX}/inference/")
    assert f"{extract_key}/products.parquet" in keys and f"{extract_key}/manifest.json" in keys
    shard_keys = [k for k in keys if "/shards-" in k]
    assert sorted(k.rsplit("/", 1)[1] for k in shard_keys) == [
        "manifest.json",
        "shard-00000.parquet",
        "shard-00001.parquet",
    ]
    assert {k for k in keys if "/models/" in k} == {
        f"{PREFIX}/inference/models/{t}/v{v}/{name}"
        for t, v in ((t, json.loads(models_json)["models"][t]["version"]) for t in types)
        for name in ("model.tar.gz", "recipe.json")
    }
    assert s3.keys(f"{PREFIX}/runs/") == sorted(
        f"{PREFIX}/runs/{name}.json"
        for name in (
            "train-1",
            "train-1.summary",
            "train-2",
            "train-2.summary",
            run_id,
            f"{run_id}.models",
            f"{run_id}.load",
            f"{run_id}.summary",
        )
    )
    # the storage root is the bucket: nothing under the local workspace
    assert not (base / "workspace").exists()
