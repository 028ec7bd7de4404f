"""`packwise compile` writes IR YAML that kfp's own loader reads back, with our images and cache settings."""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp import components
from typer.testing import CliRunner

from packwise_app.cli import app
from packwise_components.images import COMPONENT_IMAGES, resolve_images


def _compile(tmp_path: Path) -> Path:
    result = CliRunner().invoke(app, ["compile", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return tmp_path / "training.yaml"


def test_training_ir_loads_back_with_kfps_loader(tmp_path: Path) -> None:
    path = _compile(tmp_path)
    pipeline = components.load_component_from_file(str(path))
    assert pipeline.name == "packwise-training"
    params = set(pipeline.component_spec.inputs or {})
    assert {"week", "run_id", "package_types", "thresholds", "model_json", "gate_json"} <= params


def test_every_task_runs_in_its_components_image_with_the_right_cache_setting(tmp_path: Path) -> None:
    ir = next(yaml.safe_load_all(_compile(tmp_path).read_text()))
    images = resolve_images()
    executors = ir["deploymentSpec"]["executors"]
    seen = set()
    for label, spec in executors.items():
        component = (
            label.removeprefix("exec-").rsplit("-", 1)[0] if label[-1].isdigit() else label.removeprefix("exec-")
        )
        assert component in COMPONENT_IMAGES, label
        assert spec["container"]["image"] == images.for_component(component)
        seen.add(component)
    assert {"extract", "validate", "split", "train", "evaluate", "compare", "register", "notify"} <= seen

    def tasks(dag: dict) -> dict:
        return dag.get("dag", {}).get("tasks", {})

    all_tasks = dict(tasks(ir["root"]))
    for comp in ir["components"].values():
        all_tasks.update(tasks(comp))
    # extract must look at the data every time; everything downstream is cacheable
    assert all_tasks["extract"].get("cachingOptions", {}).get("enableCache") in (None, False)
    assert all_tasks["train"]["cachingOptions"]["enableCache"] is True
    assert all_tasks["evaluate"]["cachingOptions"]["enableCache"] is True
