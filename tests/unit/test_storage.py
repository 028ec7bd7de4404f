"""packwise.storage against moto's real S3 server: URIs, small objects, staging in and out, bad roots.

A local root is the embedded laptop run: nothing is ever copied (the mirror is the root itself).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packwise.config import StorageConfig, parse_config
from packwise.errors import ConfigError
from packwise.lineage import read_run_record, recent_run_records, remove_run_record, write_run_record
from packwise.storage import (
    StorageError,
    check_storage_root,
    is_object_store,
    join,
    read_bytes,
    task_storage,
    write_bytes,
)
from tests.s3_server import S3Server


def test_storage_root_accepts_a_local_path_or_an_s3_uri() -> None:
    assert StorageConfig(root="s3://bucket/some/prefix/").root == "s3://bucket/some/prefix"
    assert StorageConfig(root="state").root == Path("state")
    s3 = StorageConfig(root="s3://bucket/p").resolved()
    assert s3.root == "s3://bucket/p" and s3.is_object_store
    assert s3.pipeline_root == Path(".packwise").resolve() / "kfp"  # kfp.local supports only a local root
    local = StorageConfig(root="state").resolved()
    assert local.pipeline_root == Path("state").resolve() / "kfp" and not local.is_object_store


@pytest.mark.parametrize("bad", ["s3://", "s3:///prefix", "s3://bucket/a//b", "s3://bucket/../x", "gs://bucket/x"])
def test_a_malformed_storage_uri_is_one_line(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"storage": {"root": bad}}, "test config")
    assert "storage.root" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_join_keeps_the_kind_of_location() -> None:
    assert join("s3://b/p", "runs", "x.json") == "s3://b/p/runs/x.json"
    assert join(Path("/data/root"), "runs", "x.json") == "/data/root/runs/x.json"
    assert is_object_store("s3://b/p") and not is_object_store(Path("/data")) and not is_object_store("/data")


def test_run_records_round_trip_through_the_object_store(s3: S3Server) -> None:
    root = f"s3://{s3.bucket}/records"
    assert read_run_record(root, "run-1") is None
    where = write_run_record(root, "run-1", {"fingerprint": "abc", "week": 3})
    write_run_record(root, "run-1.summary", {"run_id": "run-1"})
    write_run_record(root, "run-2.summary", {"run_id": "run-2"})
    assert where == f"{root}/runs/run-1.json"
    assert read_run_record(root, "run-1") == {"fingerprint": "abc", "week": 3}
    assert json.loads(s3.read("records/runs/run-1.json")) == {"fingerprint": "abc", "week": 3}
    assert {r["run_id"] for r in recent_run_records(root, ".summary", 10)} == {"run-1", "run-2"}
    remove_run_record(root, "run-1")
    remove_run_record(root, "run-1")  # absent: nothing to do
    assert read_run_record(root, "run-1") is None
    assert s3.keys("records/runs/") == ["records/runs/run-1.summary.json", "records/runs/run-2.summary.json"]


def test_a_local_root_is_used_in_place(tmp_path: Path) -> None:
    with task_storage(tmp_path) as storage:
        assert storage.local_root == tmp_path
        assert storage.stage_in(tmp_path / "snapshots" / "x", "manifest.json") == tmp_path / "snapshots" / "x"
        (tmp_path / "f").write_text("x")
        assert storage.stage_out(tmp_path / "f") == str(tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_directory_is_staged_out_marker_last_and_in_again(s3: S3Server) -> None:
    root = f"s3://{s3.bucket}/staged"
    with task_storage(root) as storage:
        snapshot = storage.local_root / "snapshots" / "fp1"
        snapshot.mkdir(parents=True)
        for name in ("products.parquet", "labels.parquet", "manifest.json"):
            (snapshot / name).write_text(name)
        uri = storage.stage_out(snapshot, "manifest.json")
        mirror = storage.local_root
    assert not mirror.exists()  # the task's temporary mirror goes with the task
    assert uri == f"{root}/snapshots/fp1"
    assert s3.keys("staged/") == [
        f"staged/snapshots/fp1/{n}" for n in ("labels.parquet", "manifest.json", "products.parquet")
    ]
    with task_storage(root, write=False) as storage:
        local = storage.stage_in(uri, "manifest.json")
        assert local.is_relative_to(storage.local_root)
        assert sorted(p.name for p in local.iterdir()) == ["labels.parquet", "manifest.json", "products.parquet"]
        assert (local / "labels.parquet").read_text() == "labels.parquet"
        absent = storage.stage_in(f"{root}/snapshots/unknown", "manifest.json")
        assert not absent.exists()


def test_a_stored_marker_means_the_directory_is_kept(s3: S3Server) -> None:
    """Same fingerprint, same content: a second upload of a completed directory writes nothing."""
    root = f"s3://{s3.bucket}/kept"
    write_bytes(f"{root}/snapshots/fp/manifest.json", b"first")
    with task_storage(root) as storage:
        snapshot = storage.local_root / "snapshots" / "fp"
        snapshot.mkdir(parents=True)
        (snapshot / "manifest.json").write_text("second")
        (snapshot / "products.parquet").write_text("p")
        storage.stage_out(snapshot, "manifest.json")
    assert s3.keys("kept/") == ["kept/snapshots/fp/manifest.json"]
    assert read_bytes(f"{root}/snapshots/fp/manifest.json") == b"first"


def test_a_directory_without_its_marker_is_not_staged_in(s3: S3Server) -> None:
    """A half-uploaded directory (a task died before the marker) reads as absent, never as half a snapshot."""
    root = f"s3://{s3.bucket}/half"
    write_bytes(f"{root}/snapshots/fp/products.parquet", b"p")
    with task_storage(root, write=False) as storage:
        assert not storage.stage_in(f"{root}/snapshots/fp", "manifest.json").exists()


def test_a_missing_bucket_is_one_line_naming_the_root(s3: S3Server) -> None:
    with pytest.raises(StorageError) as err:
        check_storage_root("s3://no-such-bucket/prefix")
    text = str(err.value)
    assert text.startswith("storage.root s3://no-such-bucket/prefix: the bucket 'no-such-bucket' does not exist")
    assert len(text.splitlines()) == 1
    with pytest.raises(StorageError), task_storage("s3://no-such-bucket/prefix"):
        pytest.fail("a task must not start on a missing bucket")


def test_an_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    with pytest.raises(StorageError) as err:
        check_storage_root(f"s3://{s3.bucket}/prefix")
    text = str(err.value)
    assert text.startswith(f"storage.root s3://{s3.bucket}/prefix: the endpoint http://127.0.0.1:9 is unreachable")
    assert "AWS_ENDPOINT_URL_S3" in text and len(text.splitlines()) == 1


def test_the_write_probe_leaves_nothing_behind(s3: S3Server) -> None:
    check_storage_root(f"s3://{s3.bucket}/probe")
    assert s3.keys("probe/") == []


def test_access_denied_is_named_with_the_fix() -> None:
    from packwise.storage import storage_error

    err = OSError("When reading information for key 'p' in bucket 'b': AWS Error ACCESS_DENIED during HeadObject")
    text = str(storage_error(err, "s3://b/p"))
    assert text.startswith("storage.root s3://b/p: access denied (")
    assert "s3:GetObject/PutObject/ListBucket/DeleteObject" in text and len(text.splitlines()) == 1


def test_a_shared_task_volume_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"cluster": {"storage_pvc": "packwise-storage"}}, "test config")
    assert "cluster.storage_pvc is gone" in str(err.value) and "s3://bucket/prefix" in str(err.value)


def test_kfp_local_and_the_default_registry_stay_on_this_machine_with_an_s3_root(tmp_path: Path) -> None:
    config = parse_config(
        {"storage": {"root": "s3://bucket/state", "local_dir": str(tmp_path / "local")}}, "test config"
    ).resolved()
    assert config.storage.cache_root == tmp_path / "local" / "kfp-cache"
    assert config.registry.tracking_uri == f"sqlite:///{tmp_path / 'local' / 'mlflow.db'}"
    assert config.registry.artifact_root == "s3://bucket/state/mlartifacts"


def test_a_snapshot_uri_without_its_manifest_is_one_line_naming_the_uri(s3: S3Server) -> None:
    from packwise.config import FeatureConfig, ModelConfig
    from packwise.errors import DataValidationError
    from packwise.training import validate

    uri = f"s3://{s3.bucket}/half/snapshots/unfinished"
    write_bytes(f"{uri}/products.parquet", b"p")
    with pytest.raises(DataValidationError) as err:
        validate(uri, FeatureConfig(), ["bag"], ModelConfig())
    assert str(err.value) == f"{uri} has no manifest.json; re-run the extract step to rebuild it"


def test_a_model_archive_travels_byte_for_byte(s3: S3Server) -> None:
    """`.gz` names are not decompressed on the way (pyarrow's streams detect compression by extension):
    a model.tar.gz staged out and in again is the same bytes, and so are small objects named *.gz."""
    import gzip

    root = f"s3://{s3.bucket}/models"
    archive = gzip.compress(b"xgboost-model bytes" * 100)
    with task_storage(root) as storage:
        model_dir = storage.local_root / "models" / "cand1"
        model_dir.mkdir(parents=True)
        (model_dir / "model.tar.gz").write_bytes(archive)
        (model_dir / "manifest.json").write_text("{}")
        uri = storage.stage_out(model_dir, "manifest.json")
    with task_storage(root, write=False) as storage:
        assert (storage.stage_in(uri, "manifest.json") / "model.tar.gz").read_bytes() == archive
    write_bytes(f"{root}/blob.gz", archive)
    assert read_bytes(f"{root}/blob.gz") == archive
