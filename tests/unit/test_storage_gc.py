"""`packwise gc`: the newest K, registered snapshots and whatever a kfp cache entry names stay; the rest goes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packwise.errors import ConfigError
from packwise.storage_gc import collect_garbage, plan_gc
from packwise_app.cli import app


def _dir(path: Path, age: int, size: int = 1_000) -> Path:
    path.mkdir(parents=True)
    (path / "data.parquet").write_bytes(b"x" * size)
    stamp = 1_700_000_000 + 86_400 * (100 - age)  # larger age: older
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    for i in range(5):
        _dir(root / "snapshots" / f"fp{i}", age=i)
        _dir(root / "kfp" / f"packwise-training-{i}", age=i)
        _dir(root / "inference" / "extracts" / f"ex{i}", age=i)
    (root / "inference" / "extracts" / ".tmp-extract-abc").mkdir()  # a running task's work
    cache = root / "kfp-cache"
    cache.mkdir()
    # a cached split task of the oldest training run: its artifact URIs point into that run's directory
    artifact = {"__kfp_artifact__": True, "uri": str(root / "kfp" / "packwise-training-4" / "split" / "train_split")}
    (cache / "abc.json").write_text(json.dumps({"Output": "{}", "train_split": str(artifact)}))
    # a cached extract whose output value names an inference extract
    (cache / "def.json").write_text(json.dumps({"Output": json.dumps({"dir": str(root / "inference/extracts/ex3")})}))
    return root


def _kept(root: Path, fingerprints: set[str], keep: int) -> dict[str, str | None]:
    plan = plan_gc(root, root / "kfp-cache", fingerprints, keep)
    return {str(c.path.relative_to(root)): c.keep_reason for c in plan}


def test_the_rule(root: Path) -> None:
    kept = _kept(root, {"fp3"}, keep=2)
    assert {k for k, v in kept.items() if v} == {
        "snapshots/fp0", "snapshots/fp1", "snapshots/fp3",  # newest 2, registered
        "kfp/packwise-training-0", "kfp/packwise-training-1", "kfp/packwise-training-4",  # newest 2, cached
        "inference/extracts/ex0", "inference/extracts/ex1", "inference/extracts/ex3",  # newest 2, cached
    }  # fmt: skip
    assert kept["snapshots/fp3"] == "a registered version was trained on it"
    assert kept["kfp/packwise-training-4"] == "a cached task's outputs name it"
    assert not any(".tmp" in k for k in kept)
    assert kept["snapshots/fp2"] is None and kept["snapshots/fp4"] is None


def test_dry_run_deletes_nothing_and_the_real_run_deletes_exactly_the_plan(root: Path) -> None:
    dry = collect_garbage(root, root / "kfp-cache", {"fp3"}, 2, dry_run=True)
    assert len(dry.deleted) == 6 and all(c.path.exists() for c in dry.candidates)
    assert dry.freed_bytes >= 6_000
    done = collect_garbage(root, root / "kfp-cache", {"fp3"}, 2, dry_run=False)
    assert [c.path for c in done.deleted] == [c.path for c in dry.deleted]
    assert not any(c.path.exists() for c in done.deleted) and all(c.path.exists() for c in done.kept)
    assert (root / "kfp-cache" / "abc.json").exists() and (root / "inference/extracts/.tmp-extract-abc").exists()
    # the cached task's artifact is still there for the next cache hit
    assert (root / "kfp" / "packwise-training-4").is_dir()


def test_negative_keep_is_refused(root: Path) -> None:
    with pytest.raises(ConfigError, match="--keep"):
        plan_gc(root, root / "kfp-cache", set(), -1)


def test_cli_dry_run_lists_and_keeps_everything(root: Path, tmp_path: Path) -> None:
    config = tmp_path / "packwise.yaml"
    settings = {"storage": {"root": str(root)}, "warehouse": {"path": str(root / "w.duckdb")}}
    config.write_text(yaml.safe_dump(settings))
    args = ["gc", "--config", str(config), "--keep", "1"]
    result = CliRunner().invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "would delete" in result.output and "snapshots/fp4" in result.output
    assert (root / "snapshots" / "fp4").exists()
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # nothing registered in this empty registry: only the newest snapshot stays
    assert sorted(p.name for p in (root / "snapshots").iterdir()) == ["fp0"]
    assert (root / "kfp" / "packwise-training-4").exists()
