"""Bad input a user can type reaches them as one line (exit 2), and nothing is written or started (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from packwise.config import PackwiseConfig
from packwise.errors import DataValidationError
from packwise.snapshot import resolve_training_week
from packwise.warehouse import open_warehouse
from packwise_app.cli import app
from tests.conftest import make_config, seed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[PackwiseConfig, Path]:
    root = tmp_path_factory.mktemp("bad") / "state"
    cfg = make_config(root)
    seed(cfg, seed=3, n_products=400, weeks=4, labels_per_week=40)
    with open_warehouse(cfg.warehouse) as wh:  # week 3 brings no labels of its own
        wh.execute("DELETE FROM labels WHERE week = 3")
    config = root.parent / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(root)}, "warehouse": {"path": str(cfg.warehouse.path)}}))
    return cfg, config


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def _nothing_started(cfg: PackwiseConfig) -> None:
    root = cfg.storage.root
    assert not (root / "kfp").exists() and not (root / "runs").exists() and not (root / "snapshots").exists()


def test_a_week_past_the_label_history_is_refused(seeded: tuple[PackwiseConfig, Path]) -> None:
    cfg, config = seeded
    line = _one_line_error(_invoke(["train", "--week", "9", "--config", str(config)]))
    assert line == "error: week 9 is past the label history (last week: 4); pass --week 4 (or 0 for the newest week)"
    _nothing_started(cfg)


def test_a_week_without_new_labels_needs_the_flag(seeded: tuple[PackwiseConfig, Path]) -> None:
    cfg, config = seeded
    line = _one_line_error(_invoke(["train", "--week", "3", "--config", str(config)]))
    assert line.startswith("error: week 3 brings no new labels")
    assert line.endswith("pass --allow-no-new-labels to train anyway")
    _nothing_started(cfg)
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        assert resolve_training_week(wh, 3, allow_no_new_labels=True) == 3
        assert resolve_training_week(wh, 2) == 2


def test_week_zero_is_the_newest_labelled_week(seeded: tuple[PackwiseConfig, Path]) -> None:
    cfg, _ = seeded
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        assert resolve_training_week(wh, 0) == 4


def test_an_empty_label_table_is_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "state")
    seed(cfg, seed=1, n_products=50, weeks=1, labels_per_week=10)
    with open_warehouse(cfg.warehouse) as wh:
        wh.execute("DELETE FROM labels")
        with pytest.raises(DataValidationError, match=r"^the warehouse has no labels"):
            resolve_training_week(wh, 0)


def test_an_unparsable_set_value_is_one_line(seeded: tuple[PackwiseConfig, Path]) -> None:
    cfg, config = seeded
    line = _one_line_error(_invoke(["train", "--week", "1", "--config", str(config), "--set", "split.seed=[1,"]))
    assert line.startswith("error: --set split.seed: value '[1,' is not valid YAML")
    _nothing_started(cfg)


def test_an_unwritable_storage_root_is_one_line(seeded: tuple[PackwiseConfig, Path], tmp_path: Path) -> None:
    _, config = seeded
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = blocker / "state"
    for command in (["train", "--week", "1"], ["infer", "--mode", "monthly"]):
        result = _invoke([*command, "--config", str(config), "--set", f"storage.root={root}"])
        line = _one_line_error(result)
        assert line.startswith(f"error: storage.root {root} is not writable (")
        assert line.endswith("set storage.root to a directory you can write")
    assert blocker.read_text() == "not a directory"


def test_a_corrupt_run_summary_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "state"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / "r1.summary.json").write_text('{"run_id": "r1", "package_ty')
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(root)}}))
    line = _one_line_error(_invoke(["runs", "r1", "--config", str(config)]))
    assert "r1.summary.json is corrupt (" in line and line.endswith("delete it or re-run that run")
    assert (root / "runs" / "r1.summary.json").read_text() == '{"run_id": "r1", "package_ty'


def test_markup_in_a_product_id_is_printed_as_text(
    seeded: tuple[PackwiseConfig, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, config = seeded
    from packwise_pipelines import local

    def failed_run(*_: Any, **__: Any) -> local.LocalRun:
        error = "snapshot: products has 1 duplicate product_id rows (e.g. 'P[/red]X[bold]'); make it unique"
        event = local.TaskEvent(task="validate", state="failed", seconds=0.1, error=error)
        return local.LocalRun("r-markup", False, 0.1, [event], tmp_path / "run.log", ["validate"])

    monkeypatch.setattr(local, "training_run", failed_run)
    result = _invoke(["train", "--week", "2", "--config", str(config)])
    assert result.exit_code == 1, result.output
    expected = "error: validate: snapshot: products has 1 duplicate product_id rows (e.g. 'P[/red]X[bold]')"
    assert expected in result.output
