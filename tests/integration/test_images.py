"""The built images: non-root, holding exactly their extras, and running the training DAG task by task.

Needs a Docker engine and the images of images/build-all.sh (or scripts/ci-docker.sh); every test here is
skipped, with the reason, when either is missing, so the unit tests still run without Docker.

Which image each task ran in is read from the engine's records, not assumed: a watcher follows the
engine's container `create` events during the run and inspects each container (image, and the
`--function_to_execute` argument of kfp's executor, i.e. the component), before it is auto-removed.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from packwise.config import PackwiseConfig
from packwise_components.images import COMPONENT_IMAGES, resolve_images
from tests.unit.test_image_contents import (
    all_image_extras,
    canonical,
    component_functions,
    component_imports,
    image_distributions,
)

# Installed by venv/pip themselves, not by any requirement.
TOOLING = {"pip", "setuptools", "wheel", "packwise"}


def _engine() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return client
    except Exception:
        return None


def _missing_images(client: Any) -> list[str]:
    if client is None:
        return []
    images = resolve_images()
    refs = [images.ref("base"), *(images.ref(name) for name in sorted(all_image_extras()))]
    missing = []
    for ref in refs:
        try:
            client.images.get(ref)
        except Exception:
            missing.append(ref)
    return missing


_CLIENT = _engine()
_MISSING = _missing_images(_CLIENT)
pytestmark = [
    pytest.mark.skipif(_CLIENT is None, reason="no Docker engine reachable: start dockerd or run scripts/ci-docker.sh"),
    pytest.mark.skipif(
        bool(_MISSING), reason=f"images not built ({', '.join(_MISSING)}): run images/build-all.sh first"
    ),
]

IMAGE_NAMES = sorted(all_image_extras())


def _run(image: str, *command: str) -> str:
    assert _CLIENT is not None
    out: bytes = _CLIENT.containers.run(resolve_images().ref(image), list(command), remove=True)
    return out.decode()


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


# ------------------------------------------------------------------ the DAG in containers ---------------


@dataclass
class ContainerWatch:
    """Records (component, image) of every container the engine creates while active."""

    client: Any
    seen: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._since = int(time.time()) - 1
        self._events = self.client.events(
            decode=True, since=self._since, filters={"type": "container", "event": "create"}
        )
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        for event in self._events:
            try:
                attrs = self.client.api.inspect_container(event["id"])
            except Exception as err:  # removed already: recorded as a failure of the check
                self.errors.append(f"{event['id'][:12]} ({event.get('Actor', {}).get('Attributes')}): {err}")
                continue
            args = attrs["Config"]["Cmd"] or []
            function = args[args.index("--function_to_execute") + 1] if "--function_to_execute" in args else "?"
            self.seen.append((function, attrs["Config"]["Image"]))

    def stop(self) -> None:
        time.sleep(1)
        self._events.close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PackwiseConfig, PackwiseConfig]]:
    """Two storage roots over copies of one seeded warehouse: one per runner."""
    from tests.conftest import make_config, seed

    base = tmp_path_factory.mktemp("images")
    sub = make_config(base / "subprocess")
    seed(sub, seed=5, n_products=3000, weeks=2, labels_per_week=800)
    dock = make_config(base / "docker")
    dock.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sub.warehouse.path, dock.warehouse.path)
    yield sub, dock


def _decisions(config: PackwiseConfig, run_id: str) -> dict[str, Any]:
    from packwise.run_summary import read_summary

    summary = read_summary(config.storage.root, run_id)
    assert summary is not None, f"no summary for {run_id}"
    return {
        row["package_type"]: (row["decision"], row.get("version"), row.get("candidate"))
        for row in summary["package_types"]
    }


@pytest.mark.pipeline
def test_training_in_containers_matches_subprocess_and_uses_each_components_image(
    seeded: tuple[PackwiseConfig, PackwiseConfig],
) -> None:
    from packwise_pipelines.local import training_run

    sub_cfg, dock_cfg = seeded
    sub = training_run(sub_cfg, 1, runner="subprocess", run_id="images-subprocess")
    assert sub.succeeded, f"subprocess run failed: {sub.failed_tasks}; see {sub.log_path}"

    watch = ContainerWatch(_CLIENT)
    try:
        dock = training_run(dock_cfg, 1, runner="docker", run_id="images-docker")
    finally:
        watch.stop()
    assert dock.succeeded, f"docker run failed: {dock.failed_tasks}; see {dock.log_path}"

    # Same decisions and the same candidate scores as the subprocess runner on the same data.
    assert _decisions(dock_cfg, dock.run_id) == _decisions(sub_cfg, sub.run_id)

    # One container per executed task, each in the image its component names.
    assert watch.errors == []
    executed = [e.task for e in dock.events if e.state in {"succeeded", "failed"}]
    assert len(watch.seen) == len(executed), (watch.seen, executed)
    component_of = {func: comp for comp, (_, func) in component_functions().items()}
    images = resolve_images()
    wrong = [
        (function, image)
        for function, image in watch.seen
        if function not in component_of or image != images.for_component(component_of[function])
    ]
    assert wrong == [], f"tasks in the wrong image: {wrong}"
    assert {component_of[f] for f, _ in watch.seen} == set(COMPONENT_IMAGES)

    # Files the tasks wrote stay the caller's.
    owners = {p.stat().st_uid for p in Path(dock_cfg.storage.root).rglob("*")}
    assert owners <= {os.getuid()}
