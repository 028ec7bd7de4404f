"""Inference components tested twice, a fixed pair per component: as plain Python (each component's
function with artifact objects on local paths, in DAG order) and through kfp.local's subprocess runner
(the same components chained in a pipeline, since kfp.local runs artifact inputs only inside one).

One seeded warehouse and registry per module: every package type gets a champion trained by the packwise
step functions, then each leg scores the whole inventory (two shards) and loads it under its own run id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl, local

from packwise.config import PackwiseConfig
from packwise.predictions import PREDICTIONS
from packwise.warehouse import open_warehouse
from packwise_components import inference as components
from packwise_components.images import resolve_images
from packwise_components.inference import build_inference_components
from tests.conftest import make_config, seed

COMPONENTS = build_inference_components(resolve_images())
N_PRODUCTS = 1_200
INFERENCE = {"shard_target_rows": 700, "batch_rows": 1_024}  # two shards: 700 and 500 rows


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    """A warehouse whose every package type has an approved champion."""
    from packwise import training

    config = make_config(
        tmp_path_factory.mktemp("inference-components") / "state", model={"num_boost_round": 15}, inference=INFERENCE
    )
    seed(config, seed=4, n_products=N_PRODUCTS, weeks=1, labels_per_week=600)
    record = training.extract(config.warehouse, config.storage.root, 1, "train-week1")
    out = config.storage.root / "split"
    train_path, validation_path = out / "train.parquet", out / "validation.parquet"
    training.split(Path(record["snapshot_dir"]), train_path, validation_path, config.split, config.package_type_names)
    for package_type in config.package_type_names:
        model = out / f"{package_type}.tar.gz"
        summary = training.train(
            train_path, validation_path, package_type, config.features, config.model, model, package_type, "fp"
        ).summary
        evaluation, _ = training.evaluate(model, validation_path, package_type, 0.5, config.registry, out / "scratch")
        decision = training.compare(summary.model_dump_json(), evaluation.model_dump_json(), config.gate)
        assert decision.approved, "the first model of a type"
        training.register(
            model,
            summary.model_dump_json(),
            evaluation.model_dump_json(),
            json.dumps(decision.to_dict()),
            config.registry,
        )
    return config


@pytest.fixture(scope="module")
def runner(cfg: PackwiseConfig) -> Iterator[Path]:
    """One kfp.local session for the module's runner test."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(cfg.storage.root / "kfp"))
    yield cfg.storage.root


def _artifact(kind: type[Any], path: Path, **metadata: Any) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return kind(name=path.stem, uri=str(path), metadata=dict(metadata))


def _loaded(cfg: PackwiseConfig, run_id: str) -> Any:
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        return wh.fetch_df(f"SELECT * FROM {PREDICTIONS} WHERE run_id = '{run_id}' ORDER BY product_id")


def _thresholds(cfg: PackwiseConfig) -> dict[str, float]:
    return {p.name: p.threshold for p in cfg.package_types}


def test_every_inference_component_as_plain_python(cfg: PackwiseConfig, tmp_path: Path) -> None:
    run_id, types = "plain-monthly", cfg.package_type_names
    products = _artifact(dsl.Dataset, tmp_path / "products")
    extract_dir, since, watermark, n_products = components.extract_products(
        "monthly",
        cfg.section_json("warehouse"),
        cfg.section_json("inference"),
        str(cfg.storage.root),
        run_id,
        "job",
        products,
    )
    assert n_products == N_PRODUCTS and since == "" and watermark

    models_json = components.resolve_models(
        cfg.section_json("registry"), types, _thresholds(cfg), {}, str(cfg.storage.root), run_id, "job"
    )
    models = json.loads(models_json)
    assert models["package_types"] == types
    assert {t: m["version"] for t, m in models["models"].items()} == dict.fromkeys(types, 1)

    plan = _artifact(dsl.Artifact, tmp_path / "plan.json")
    assert components.prepare_products(extract_dir, models_json, "monthly", cfg.section_json("inference"), plan) == (
        N_PRODUCTS
    )
    assert plan.metadata["models"] == dict.fromkeys(types, 1)

    shards = components.shard_products(plan, cfg.section_json("inference"))
    assert [Path(s).name for s in shards] == ["shard-00000.parquet", "shard-00001.parquet"]

    scored = []
    for index, shard in enumerate(shards):
        out = _artifact(dsl.Dataset, tmp_path / f"scored-{index}")
        stats = json.loads(
            components.score_shard(
                shard,
                plan,
                cfg.section_json("inference"),
                cfg.section_json("compute"),
                cfg.section_json("sagemaker"),
                out,
            )
        )
        assert stats["shard"] == Path(shard).stem and json.loads(out.metadata["stats"]) == stats
        assert sum(stats["recommended"].values()) == stats["rows"]
        scored.append(out)
    assert [json.loads(s.metadata["stats"])["rows"] for s in scored] == [700, 500]

    loaded = json.loads(
        components.load_predictions(
            plan,
            scored,
            "monthly",
            since,
            watermark,
            cfg.section_json("warehouse"),
            cfg.section_json("inference"),
            str(cfg.storage.root),
            run_id,
            "job",
        )
    )
    assert loaded["loaded"] and loaded["n_products"] == N_PRODUCTS
    table = _loaded(cfg, run_id)
    assert len(table) == N_PRODUCTS and table["product_id"].is_unique

    status = dsl.PipelineTaskFinalStatus("SUCCEEDED", "job", "score-and-load", None, None)
    summary = json.loads(
        components.notify_inference(str(cfg.storage.root), run_id, "job", cfg.section_json("notify"), types, status)
    )
    assert summary["n_products"] == N_PRODUCTS and summary["loaded"]


def test_every_inference_component_through_the_local_runner(cfg: PackwiseConfig, runner: Path) -> None:
    run_id, types = "runner-monthly", cfg.package_type_names

    @dsl.pipeline(name="inference-components")
    def chain():  # type: ignore[no-untyped-def]  # kfp reads the annotations (none: no outputs)
        notify_task = COMPONENTS.notify(
            storage_root=str(cfg.storage.root),
            run_id=run_id,
            job_id="job",
            notify_json=cfg.section_json("notify"),
            package_types=types,
        )
        with dsl.ExitHandler(notify_task):
            extract_task = COMPONENTS.extract(
                mode="monthly",
                warehouse_json=cfg.section_json("warehouse"),
                inference_json=cfg.section_json("inference"),
                storage_root=str(cfg.storage.root),
                run_id=run_id,
                job_id="job",
            )
            resolve_task = COMPONENTS.resolve(
                registry_json=cfg.section_json("registry"),
                package_types=types,
                thresholds=_thresholds(cfg),
                pinned_models={},
                storage_root=str(cfg.storage.root),
                run_id=run_id,
                job_id="job",
            )
            prepare_task = COMPONENTS.prepare(
                extract_dir=extract_task.outputs["extract_dir"],
                models_json=resolve_task.output,
                mode="monthly",
                inference_json=cfg.section_json("inference"),
            )
            inference_json = cfg.section_json("inference")
            shard_task = COMPONENTS.shard(plan=prepare_task.outputs["plan"], inference_json=inference_json)
            with dsl.ParallelFor(shard_task.output) as shard:
                score_task = COMPONENTS.score(
                    shard=shard,
                    plan=prepare_task.outputs["plan"],
                    inference_json=cfg.section_json("inference"),
                    compute_json=cfg.section_json("compute"),
                    sagemaker_json=cfg.section_json("sagemaker"),
                )
            COMPONENTS.load(
                plan=prepare_task.outputs["plan"],
                scored=dsl.Collected(score_task.outputs["scored"]),
                mode="monthly",
                since=extract_task.outputs["since"],
                watermark=extract_task.outputs["watermark"],
                warehouse_json=cfg.section_json("warehouse"),
                inference_json=cfg.section_json("inference"),
                storage_root=str(cfg.storage.root),
                run_id=run_id,
                job_id="job",
            )

    chain()
    table = _loaded(cfg, run_id)
    assert len(table) == N_PRODUCTS and table["product_id"].is_unique
    assert set(table["recommended_type"]) <= set(types)
    from packwise.run_summary import read_summary

    summary = read_summary(cfg.storage.root, run_id)
    assert summary is not None and summary["n_products"] == N_PRODUCTS and summary["loaded"]
