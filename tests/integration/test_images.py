"""The built images: non-root, holding exactly their extras, and running both pipelines task by task.

Needs a Docker engine and the images of images/build-all.sh (or scripts/ci-docker.sh), built from this
working tree; every test here is skipped, with the reason, when the engine is missing, an image is missing,
or the images were built from other code (the `io.packwise.source` label, images/source_hash.py). So the
unit tests still run without Docker, and stale images are never mistaken for the current code.

Which image each task ran in is read from the engine's records, not assumed: a watcher follows the
engine's container `create` events of the run (only containers labelled with the run's storage root, so
nothing else on the engine counts) and inspects each container (image, and the `--function_to_execute`
argument of kfp's executor, i.e. the component) before it is auto-removed.

Both pipelines run on one small seeded warehouse copied into two storage roots, one per runner: week-1
training, then a monthly inference run over the whole inventory (two shards, so the ParallelFor runs).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import pandas as pd
import pytest
import yaml

from packwise.config import PackwiseConfig
from packwise_components.images import COMPONENT_IMAGES, SERVICE_IMAGES, resolve_images
from tests.pipelines.test_image_contents import (
    ROOT,
    ImportWalker,
    all_image_extras,
    canonical,
    component_functions,
    component_imports,
    image_distributions,
    load,
)

# Installed by venv/pip themselves, not by any requirement.
TOOLING = {"pip", "setuptools", "wheel", "packwise"}
N_PRODUCTS = 3_000
# 1,500 products per shard: two score-shard tasks, so the loop and the collection run in containers too.
INFERENCE = {"shard_target_rows": 1_500, "batch_rows": 1_024}


def _source_hash_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("packwise_image_source", ROOT / "images" / "source_hash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = _source_hash_module()
IMAGE_NAMES = sorted(all_image_extras())


def _engine() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception:
        return None


def _image_problems(client: Any) -> tuple[list[str], list[str]]:
    """(missing refs, refs built from other code than this tree)."""
    if client is None:
        return [], []
    images = resolve_images()
    here = SOURCE.source_hash(ROOT)
    missing, stale = [], []
    for ref in [images.ref("base"), *(images.ref(name) for name in IMAGE_NAMES)]:
        try:
            labels = client.images.get(ref).attrs["Config"].get("Labels") or {}
        except Exception:
            missing.append(ref)
            continue
        built_from = labels.get(SOURCE.LABEL)
        if built_from is not None and built_from != here:  # no label (e.g. skaffold): cannot tell, so run
            stale.append(f"{ref} ({built_from})")
    return missing, stale


_CLIENT = _engine()
_MISSING, _STALE = _image_problems(_CLIENT)
pytestmark = [
    pytest.mark.skipif(_CLIENT is None, reason="no Docker engine reachable: start dockerd or run scripts/ci-docker.sh"),
    pytest.mark.skipif(
        bool(_MISSING), reason=f"images not built ({', '.join(_MISSING)}): run images/build-all.sh first"
    ),
    pytest.mark.skipif(
        bool(_STALE),
        reason=f"images built from other code than this tree (source {SOURCE.source_hash(ROOT)}): "
        f"{_STALE[0] if _STALE else ''} and {max(len(_STALE) - 1, 0)} more; run images/build-all.sh",
    ),
]


def _run(image: str, *command: str, **kwargs: Any) -> str:
    assert _CLIENT is not None
    out: bytes = _CLIENT.containers.run(resolve_images().ref(image), list(command), remove=True, **kwargs)
    return out.decode()


def test_every_component_and_service_image_is_checked_here() -> None:
    assert set(IMAGE_NAMES) == set(COMPONENT_IMAGES.values()) | set(SERVICE_IMAGES)
    assert "watcher" in IMAGE_NAMES
    # SageMaker jobs run the train image (sagemaker.training_image: packwise), not an image of their own.
    assert "sagemaker" not in IMAGE_NAMES and "train" in IMAGE_NAMES


@pytest.mark.parametrize("image", ["base", *IMAGE_NAMES])
def test_image_runs_as_non_root(image: str) -> None:
    assert _CLIENT is not None
    config = _CLIENT.images.get(resolve_images().ref(image)).attrs["Config"]
    assert config["User"] not in ("", "0", "root"), f"{image}: no USER or USER root"
    assert _run(image, "id", "-u").strip() != "0"


@pytest.mark.parametrize("image", IMAGE_NAMES)
def test_image_holds_exactly_its_extras(image: str) -> None:
    """pip's view inside the image equals core + the image's extras (+ their dependencies), no more."""
    listed = json.loads(_run(image, "python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"))
    installed = {canonical(p["name"]) for p in listed} - TOOLING
    expected = image_distributions(all_image_extras()[image])
    assert installed - expected == set(), f"{image}: installed but not needed by its extras"
    assert expected - installed == set(), f"{image}: needed by its extras but not installed"


@pytest.mark.parametrize("component", sorted(COMPONENT_IMAGES))
def test_component_imports_work_in_its_image(component: str) -> None:
    modules = sorted(component_imports(component))
    _run(COMPONENT_IMAGES[component], "python", "-c", f"import {', '.join(modules)}")


def _service_imports(module: str) -> list[str]:
    """Third-party modules that importing `module` and using its definitions reaches (as the unit test walks)."""
    walker = ImportWalker()
    walker.module(module)
    for name, node in load(module).defs.items():
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            walker.definition(module, name)
    return sorted(walker.external)


def _deployment_command(image: str) -> list[str]:
    """command + the subcommand of the container running `image` in manifests/base/<image>.yaml."""
    for doc in yaml.safe_load_all((ROOT / "manifests" / "base" / f"{image}.yaml").read_text()):
        if not doc or doc.get("kind") != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["image"].split(":")[0].endswith(f"packwise-{image}"):
                return [*container["command"], container["args"][0]]
    raise AssertionError(f"no Deployment container runs packwise-{image} in manifests/base/{image}.yaml")


@pytest.mark.parametrize("image", sorted(SERVICE_IMAGES))
def test_service_image_imports_its_module_and_starts_its_command(image: str) -> None:
    module = SERVICE_IMAGES[image]
    _run(image, "python", "-c", f"import {', '.join([module, *_service_imports(module)])}")
    # As the Deployment runs it: read-only root filesystem, HOME and a writable /tmp.
    out = _run(
        image,
        *_deployment_command(image),
        "--help",
        read_only=True,
        tmpfs={"/tmp": ""},
        environment={"HOME": "/tmp", "COLUMNS": "120"},
    )
    assert "Usage:" in out, out


# ------------------------------------------------------------------ the DAGs in containers --------------


@dataclass
class ContainerWatch:
    """Records (function, image) of every task container the docker runner creates for one storage root."""

    client: Any
    config: PackwiseConfig
    seen: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __enter__(self) -> ContainerWatch:
        from packwise_pipelines.local import CONTAINER_LABEL

        root = self.config.resolved().storage.root
        self._events = self.client.events(
            decode=True,
            since=int(time.time()) - 1,
            filters={"type": "container", "event": "create", "label": f"{CONTAINER_LABEL}={root}"},
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        try:
            for event in self._events:
                try:
                    attrs = self.client.api.inspect_container(event["id"])
                except Exception as err:  # removed already: recorded as a failure of the check
                    self.errors.append(f"{event['id'][:12]} ({event.get('Actor', {}).get('Attributes')}): {err}")
                    continue
                args = attrs["Config"]["Cmd"] or []
                function = args[args.index("--function_to_execute") + 1] if "--function_to_execute" in args else "?"
                self.seen.append((function, attrs["Config"]["Image"]))
        except Exception:  # the stream closed under us by __exit__
            pass

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        # Every container was created before the run returned; give the follower until it has been quiet for
        # a second (at most 15 s) to read and inspect the last ones.
        deadline, count, quiet_since = time.monotonic() + 15, -1, time.monotonic()
        while time.monotonic() < deadline:
            now = len(self.seen) + len(self.errors)
            if now != count:
                count, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= 1.0:
                break
            time.sleep(0.2)
        self._events.close()
        self._thread.join(timeout=5)


def _executed(run: Any) -> Counter[str]:
    return Counter(e.task for e in run.events if e.state in {"succeeded", "failed"})


def _assert_each_task_ran_in_its_components_image(watch: ContainerWatch, docker_run: Any, subprocess_run: Any) -> None:
    """One container per executed task, each in the image its component names; the same tasks as the
    subprocess run executed."""
    assert watch.errors == [], watch.errors
    component_of = {func: comp for comp, (_, func) in component_functions().items()}
    unknown = [function for function, _ in watch.seen if function not in component_of]
    assert unknown == [], f"containers that ran no known component: {unknown}"
    images = resolve_images()
    wrong = [
        (component_of[function], image)
        for function, image in watch.seen
        if image != images.for_component(component_of[function])
    ]
    assert wrong == [], f"tasks in the wrong image: {wrong}"
    in_containers = Counter(component_of[function] for function, _ in watch.seen)
    assert in_containers == _executed(docker_run), (in_containers, _executed(docker_run))
    assert in_containers == _executed(subprocess_run), (in_containers, _executed(subprocess_run))


def _assert_files_stay_the_callers(config: PackwiseConfig) -> None:
    owners = {p.stat().st_uid for p in Path(config.storage.root).rglob("*")}
    assert owners <= {os.getuid()}, owners


@dataclass
class Trained:
    sub_cfg: PackwiseConfig
    dock_cfg: PackwiseConfig
    sub: Any
    dock: Any
    watch: ContainerWatch


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Two storage roots over copies of one seeded warehouse, week 1 trained in each: one per runner."""
    from packwise_pipelines.local import training_run
    from tests.conftest import make_config, seed

    base = tmp_path_factory.mktemp("images")
    sub_cfg = make_config(base / "subprocess", inference=INFERENCE)
    seed(sub_cfg, seed=5, n_products=N_PRODUCTS, weeks=2, labels_per_week=800)
    dock_cfg = make_config(base / "docker", inference=INFERENCE)
    dock_cfg.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sub_cfg.warehouse.path, dock_cfg.warehouse.path)

    sub = training_run(sub_cfg, 1, runner="subprocess", run_id="images-train")
    assert sub.succeeded, f"subprocess training failed: {sub.failed_tasks}; see {sub.log_path}"
    with ContainerWatch(_CLIENT, dock_cfg) as watch:
        dock = training_run(dock_cfg, 1, runner="docker", run_id="images-train")
    assert dock.succeeded, f"docker training failed: {dock.failed_tasks}; see {dock.log_path}"
    yield Trained(sub_cfg, dock_cfg, sub, dock, watch)


def _decisions(config: PackwiseConfig, run_id: str) -> dict[str, Any]:
    from packwise.run_summary import read_summary

    summary = read_summary(config.storage.root, run_id)
    assert summary is not None, f"no summary for {run_id}"
    return {
        row["package_type"]: (row["decision"], row.get("version"), row.get("candidate"))
        for row in summary["package_types"]
    }


@pytest.mark.pipeline
def test_training_in_containers_matches_subprocess_and_uses_each_components_image(trained: Trained) -> None:
    # Same decisions and the same candidate scores as the subprocess runner on the same data.
    assert _decisions(trained.dock_cfg, trained.dock.run_id) == _decisions(trained.sub_cfg, trained.sub.run_id)
    _assert_each_task_ran_in_its_components_image(trained.watch, trained.dock, trained.sub)
    assert set(_executed(trained.dock)) == {
        "extract", "validate", "split", "train", "evaluate", "compare", "register", "notify"
    }  # fmt: skip
    _assert_files_stay_the_callers(trained.dock_cfg)


def _predictions(config: PackwiseConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(current predictions by product, the load ledger without its load time)."""
    from packwise.predictions import PREDICTION_RUNS, PREDICTIONS
    from packwise.warehouse import open_warehouse

    with open_warehouse(config.warehouse, read_only=True) as wh:
        rows = wh.fetch_df(f"SELECT * FROM {PREDICTIONS} WHERE is_current ORDER BY product_id")
        ledger = wh.fetch_df(f"SELECT * FROM {PREDICTION_RUNS} ORDER BY run_id")
    return rows.reset_index(drop=True), ledger.drop(columns=["loaded_at"]).reset_index(drop=True)


@pytest.mark.pipeline
def test_inference_in_containers_gives_the_same_predictions_to_the_row(trained: Trained) -> None:
    from packwise.registry import open_registry
    from packwise_pipelines.local import inference_run

    # The same run id in both roots, so the rows are comparable as they are (run_id is a column).
    sub = inference_run(trained.sub_cfg, "monthly", runner="subprocess", run_id="images-monthly")
    assert sub.succeeded, f"subprocess inference failed: {sub.failed_tasks}; see {sub.log_path}"
    with ContainerWatch(_CLIENT, trained.dock_cfg) as watch:
        dock = inference_run(trained.dock_cfg, "monthly", runner="docker", run_id="images-monthly")
    assert dock.succeeded, f"docker inference failed: {dock.failed_tasks}; see {dock.log_path}"

    sub_rows, sub_ledger = _predictions(trained.sub_cfg)
    dock_rows, dock_ledger = _predictions(trained.dock_cfg)
    # Every product, once, from the champions of that root's registry (v1 of every type after week 1).
    assert len(sub_rows) == N_PRODUCTS and sub_rows["product_id"].is_unique
    registry = open_registry(trained.dock_cfg.registry)
    for package_type in trained.dock_cfg.package_type_names:
        champion = registry.champion(package_type)
        assert champion is not None
        assert dock_rows[f"model_version_{package_type}"].eq(champion.version).all(), package_type
    # To the row: same product ids, probabilities bit for bit, recommendations and model versions.
    assert dock_rows["product_id"].tolist() == sub_rows["product_id"].tolist()
    assert dock_rows["recommended_type"].tolist() == sub_rows["recommended_type"].tolist()
    pd.testing.assert_frame_equal(dock_rows, sub_rows, check_exact=True)
    pd.testing.assert_frame_equal(dock_ledger, sub_ledger, check_exact=True)

    _assert_each_task_ran_in_its_components_image(watch, dock, sub)
    assert _executed(dock)["score-shard"] == 2
    assert set(_executed(dock)) == {
        "extract-products", "resolve-models", "prepare-products", "shard-products", "score-shard",
        "load-predictions", "notify-inference",
    }  # fmt: skip
    _assert_files_stay_the_callers(trained.dock_cfg)
