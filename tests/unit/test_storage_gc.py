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
from tests.s3_server import S3Server


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


# -- an s3:// root (moto's S3 server) -------------------------------------------------------------------


def _put_dir(s3: S3Server, prefix: str, manifest: bool = True, size: int = 1_000) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/products.parquet", Body=b"x" * size)
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/shards-abc/shard-00000.parquet", Body=b"y" * size)
    if manifest:
        client.put_object(Bucket=s3.bucket, Key=f"{prefix}/manifest.json", Body=b"{}")


@pytest.fixture
def bucket_root(s3: S3Server, tmp_path: Path) -> tuple[str, Path]:
    """Three generations of snapshots and extracts under an s3:// root, a second apart (S3 times are in
    seconds), an upload without its manifest yet, kfp.local outputs and cache in a local workspace."""
    import time

    prefix = f"gc-{tmp_path.name}"
    root = f"s3://{s3.bucket}/{prefix}"
    for age in (2, 1, 0):
        _put_dir(s3, f"{prefix}/snapshots/fp{age}")
        _put_dir(s3, f"{prefix}/inference/extracts/ex{age}")
        if age:
            time.sleep(1.05)
    _put_dir(s3, f"{prefix}/inference/extracts/uploading", manifest=False)
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/runs/monthly-1.json", Body=b"{}")
    workspace = tmp_path / "workspace"
    _dir(workspace / "kfp" / "packwise-inference-0", age=0)
    _dir(workspace / "kfp" / "packwise-inference-1", age=1)
    cache = workspace / "kfp-cache"
    cache.mkdir()
    # a cached prepare task of a kfp.local run on the bucket: its plan names the oldest extract's products
    plan = {"products_path": f"{root}/inference/extracts/ex2/products.parquet"}
    (cache / "abc.json").write_text(json.dumps({"Output": json.dumps(plan)}))
    return root, workspace


def test_the_rule_on_an_object_store_root(bucket_root: tuple[str, Path], s3: S3Server) -> None:
    root, workspace = bucket_root
    plan = plan_gc(root, workspace / "kfp-cache", {"fp2"}, keep=1, pipeline_root=workspace / "kfp")
    kept = {str(c.path).removeprefix(root + "/").removeprefix(str(workspace) + "/"): c.keep_reason for c in plan}
    assert kept == {
        "snapshots/fp0": "among the newest 1",
        "snapshots/fp1": None,
        "snapshots/fp2": "a registered version was trained on it",
        "inference/extracts/uploading": "an upload in progress (no manifest yet)",
        "inference/extracts/ex0": "among the newest 1",
        "inference/extracts/ex1": None,
        "inference/extracts/ex2": "a cached task's outputs name it",
        "kfp/packwise-inference-0": "among the newest 1",
        "kfp/packwise-inference-1": None,
    }
    sizes = {str(c.path).rsplit("/", 1)[-1]: c.bytes for c in plan if c.kind != "kfp-run"}
    assert sizes["fp1"] == 2_000 + len(b"{}")


def test_gc_on_an_object_store_deletes_exactly_the_plan_and_nothing_else(
    bucket_root: tuple[str, Path], s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from packwise import storage_gc

    root, workspace = bucket_root
    prefix = root.removeprefix(f"s3://{s3.bucket}/")
    before = s3.keys(prefix)
    dry = collect_garbage(root, workspace / "kfp-cache", {"fp2"}, 1, dry_run=True, pipeline_root=workspace / "kfp")
    assert s3.keys(prefix) == before
    # an upload abandoned for longer than the grace period is garbage too
    monkeypatch.setattr(storage_gc, "UPLOAD_GRACE_S", 0.0)
    done = collect_garbage(root, workspace / "kfp-cache", {"fp2"}, 1, dry_run=False, pipeline_root=workspace / "kfp")
    gone = {str(c.path) for c in done.deleted}
    assert gone == {str(c.path) for c in dry.deleted} | {f"{root}/inference/extracts/uploading"}
    left = s3.keys(prefix)
    assert left == [k for k in before if not any(f"s3://{s3.bucket}/{k}".startswith(g + "/") for g in gone)]
    assert f"{prefix}/runs/monthly-1.json" in left and f"{prefix}/inference/extracts/ex2/products.parquet" in left
    assert not (workspace / "kfp" / "packwise-inference-1").exists()
    assert (workspace / "kfp" / "packwise-inference-0").exists() and (workspace / "kfp-cache" / "abc.json").exists()


def test_cli_gc_on_an_object_store_root(bucket_root: tuple[str, Path], s3: S3Server, tmp_path: Path) -> None:
    root, workspace = bucket_root
    config = tmp_path / "packwise.yaml"
    settings = {
        "storage": {"root": root, "local_dir": str(workspace)},
        "warehouse": {"path": str(tmp_path / "w.duckdb")},
    }
    config.write_text(yaml.safe_dump(settings))
    args = ["gc", "--config", str(config), "--keep", "1"]
    prefix = root.removeprefix(f"s3://{s3.bucket}/")
    before = s3.keys(prefix)
    result = CliRunner().invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # the bucket's directories named relative to storage.root, as local ones are to the workspace
    assert "snapshots/fp2" in result.output and "would delete" in result.output and "s3://" not in result.output
    assert "4 of 9 directories, would free" in result.output and s3.keys(prefix) == before
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "4 of 9 directories, freed" in result.output
    # nothing registered in this empty registry: of the snapshots only the newest stays
    assert {k.split("/")[2] for k in s3.keys(f"{prefix}/snapshots/")} == {"fp0"}
    assert {k.split("/")[3] for k in s3.keys(f"{prefix}/inference/extracts/")} == {"ex0", "ex2", "uploading"}


def test_cli_gc_on_a_missing_bucket_is_one_line(tmp_path: Path, s3: S3Server) -> None:
    config = tmp_path / "packwise.yaml"
    settings = {"storage": {"root": "s3://no-such-bucket-here/x", "local_dir": str(tmp_path / "ws")}}
    config.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(app, ["gc", "--config", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert "no-such-bucket-here" in result.output and "does not exist" in result.output
