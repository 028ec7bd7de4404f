"""The compiled IR of both pipelines, task by task: image, resources, caching, retries, kfp-kubernetes settings.

What `kfp run create -f build/<pipeline>.yaml` submits must run on a cluster as it is, so every task is
checked against the configuration it was compiled from, not a sample of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from packwise.config import PackwiseConfig, parse_config
from packwise_components.images import ImageSet

IMAGES = ImageSet(registry="registry.example/ml", tag="1.2.3")
# Tasks that must look at live state every run (data, registry, ledger) or always report: never cached.
# live state (warehouse, registry, ledger), and shard-products: its files live under storage.root, which gc prunes
NEVER_CACHED = {
    "extract", "notify", "extract-products", "resolve-models", "shard-products", "load-predictions", "notify-inference"
}  # fmt: skip


def cluster_config() -> PackwiseConfig:
    return parse_config(
        {
            "storage": {"root": "s3://packwise-data/storage"},
            "warehouse": {"backend": "postgres", "dsn_env": "PACKWISE_WAREHOUSE_DSN"},
            "cluster": {
                "resources": {
                    "default": {
                        "cpu_request": "200m", "cpu_limit": "1", "memory_request": "300Mi", "memory_limit": "1Gi"
                    },
                    "train": {"cpu_request": "2", "cpu_limit": "4", "memory_request": "4Gi", "memory_limit": "8Gi"},
                    "score-shard": {
                        "cpu_request": "1500m", "cpu_limit": "3", "memory_request": "2Gi", "memory_limit": "5Gi"
                    },
                },
                "retries": {"num_retries": 3, "backoff_duration": "45s", "backoff_max_duration": "15m"},
            },
        },
        "test",
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    from packwise_pipelines.compile import compile_for_cluster

    out = tmp_path_factory.mktemp("build")
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in compile_for_cluster(cluster_config(), out, IMAGES)}


def tasks(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container task of the pipeline, inside loops, conditions and exit handlers too."""

    def walk(dag: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, task in dag.get("tasks", {}).items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                yield from walk(component["dag"])
            else:
                yield name, task

    yield from walk(spec["root"]["dag"])


def component_name(task: dict[str, Any]) -> str:
    """`comp-register-2` (the second use of `register`) -> `register`."""
    return re.sub(r"-\d+$", "", str(task["componentRef"]["name"]).removeprefix("comp-"))


def executor(spec: dict[str, Any], task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return label, spec["deploymentSpec"]["executors"][label]["container"]


EXPECTED_TASKS = {
    "training": {"notify", "extract", "validate", "split", "train", "evaluate", "compare", "register"},
    "inference": {
        "notify-inference", "extract-products", "resolve-models", "prepare-products", "shard-products",
        "score-shard", "load-predictions",
    },
}


@pytest.mark.parametrize("pipeline", ["training", "inference"])
def test_every_task_has_its_image_resources_caching_and_retries(
    compiled: dict[str, list[dict[str, Any]]], pipeline: str
) -> None:
    from packwise_components.images import COMPONENT_IMAGES

    spec, platform = compiled[pipeline]
    config = cluster_config()
    seen = set()
    for name, task in tasks(spec):
        component = component_name(task)
        seen.add(component)
        label, container = executor(spec, task)
        assert container["image"] == f"registry.example/ml/packwise-{COMPONENT_IMAGES[component]}:1.2.3", name
        res = config.cluster.resources_for(component)
        assert container["resources"]["resourceCpuRequest"] == res.cpu_request, name
        assert container["resources"]["resourceCpuLimit"] == res.cpu_limit, name
        assert container["resources"]["resourceMemoryRequest"] == res.memory_request, name
        assert container["resources"]["resourceMemoryLimit"] == res.memory_limit, name
        threads = {"1": "1", "2": "2", "3": "3", "4": "4"}[res.cpu_limit]  # whole cores of the limit
        assert {"name": "OMP_NUM_THREADS", "value": threads} in container.get("env", []), name
        assert task["cachingOptions"].get("enableCache", False) is (component not in NEVER_CACHED), name
        if component in config.cluster.retries.exempt:
            assert "retryPolicy" not in task, f"{name}: a verdict on the data is not retried"
        else:
            assert task["retryPolicy"] == {
                "maxRetryCount": 3,
                "backoffDuration": "45s",
                "backoffFactor": 2.0,
                "backoffMaxDuration": "900s",
            }, name
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]
        assert "pvcMount" not in k8s, f"{name}: tasks share no volume (storage.root is the object store)"
        assert k8s["configMapAsEnv"][0]["configMapName"] == "packwise-env" and k8s["configMapAsEnv"][0]["optional"]
        secret = k8s["secretAsEnv"][0]
        assert secret["secretName"] == "packwise-credentials" and secret["optional"]
        assert {e["envVar"] for e in secret["keyToEnv"]} == set(config.cluster.secret_keys)
        assert k8s["imagePullPolicy"] == "IfNotPresent"
    assert seen == EXPECTED_TASKS[pipeline]


def test_pipeline_parameters_point_at_the_object_store(compiled: dict[str, list[dict[str, Any]]]) -> None:
    for docs in compiled.values():
        params = docs[0]["root"]["inputDefinitions"]["parameters"]
        assert params["storage_root"]["defaultValue"] == "s3://packwise-data/storage"


def test_local_builds_carry_no_retries(tmp_path: Path) -> None:
    """kfp.local honours retry policies: a local fault drill must fail at once, so only cluster IR has them."""
    from kfp import compiler

    from packwise_pipelines.training import build_training_pipeline

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build_training_pipeline(IMAGES, cluster_config()), str(path))
    spec = next(iter(yaml.safe_load_all(path.read_text())))
    assert all("retryPolicy" not in task for _, task in tasks(spec))
    # and no thread count: kfp.local would apply it over the local runner's share of the machine
    assert all("env" not in executor(spec, task)[1] for _, task in tasks(spec))


@pytest.mark.parametrize(("limit", "threads"), [("2", 2), ("1", 1), ("1500m", 1), ("500m", 1), ("4.5", 4)])
def test_thread_count_follows_the_cpu_limit(limit: str, threads: int) -> None:
    from packwise.config import TaskResources

    assert TaskResources(cpu_limit=limit).threads == threads


def test_configure_tasks_outside_a_pipeline_is_an_error() -> None:
    from packwise.errors import PackwiseError
    from packwise_pipelines.platform import configure_tasks

    with pytest.raises(PackwiseError, match=r"inside a @dsl\.pipeline"):
        configure_tasks(PackwiseConfig())
