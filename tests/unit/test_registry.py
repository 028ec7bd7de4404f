"""The MLflow registry backend against a real local sqlite store (one store per module: migrations are slow)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from packwise.config import PackwiseConfig, RegistryConfig
from packwise.errors import ModelNotFoundError, RegistryError
from packwise.registry import Candidate, ModelVersion, Registry, Status, open_registry
from packwise.registry.mlflow_backend import (
    CHAMPION_ALIAS,
    GATE_REPORT_FILE,
    MAX_TAG_VALUE,
    TAG_STATUS,
    MlflowRegistry,
)

METRICS = {"auc": 0.91, "pr_auc": 0.72, "log_loss": 0.31}
LABEL_STATS = {"count": 1200, "positive_rate": 0.37}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-store")


@pytest.fixture(scope="module")
def registry(store: Path) -> MlflowRegistry:
    return MlflowRegistry(
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}", artifact_root=(store / "mlartifacts").as_uri()
    )


@pytest.fixture
def package_type(request: pytest.FixtureRequest) -> str:
    """A package type of its own per test, so tests sharing the store never see each other's versions."""
    return re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:60]


def _register(
    registry: Registry, package_type: str, tmp_path: Path, key: str, status: Status, **overrides: Any
) -> ModelVersion:
    model_file = tmp_path / f"{key}.tar.gz"
    if not model_file.exists():
        model_file.write_bytes(f"model bytes of {key}".encode() * 100)
    args: dict[str, Any] = {
        "package_type": package_type,
        "model_file": model_file,
        "status": status,
        "candidate_key": key,
        "data_fingerprint": f"fp-{key}-0123456789abcdef",
        "model_type": "xgboost",
        "metrics": METRICS,
        "label_stats": LABEL_STATS,
        "gate_report": f"# Gate report\n\n| criterion | value |\n|---|---|\n| auc | 0.91 |\n\nkey {key}",
        "reason": f"gate decision for {key}",
        "who": "pipeline",
        "run_id": f"run-{key}",
    }
    args.update(overrides)
    return registry.register(Candidate(**args))


def test_the_first_run_that_reports_a_version_is_recorded_once(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    v = _register(registry, package_type, tmp_path, "k1", Status.APPROVED, run_id="")
    assert v.run_id == ""
    assert registry.record_run(package_type, v.version, "training-a").run_id == "training-a"
    assert registry.record_run(package_type, v.version, "training-b").run_id == "training-a"  # first one kept
    stamped = registry.get(package_type, v.version)
    assert stamped.run_id == "training-a" and stamped.status == Status.APPROVED and len(stamped.audit) == 1
    given = _register(registry, package_type, tmp_path, "k2", Status.REJECTED)  # registered with its run
    assert registry.record_run(package_type, given.version, "training-c").run_id == "run-k2"


def _client(registry: MlflowRegistry) -> MlflowClient:
    return registry.client


def _alias_version(registry: MlflowRegistry, package_type: str) -> int | None:
    aliases = _client(registry).get_registered_model(registry.model_name(package_type)).aliases
    return int(aliases[CHAMPION_ALIAS]) if CHAMPION_ALIAS in aliases else None


def test_register_round_trip_keeps_every_field(registry: MlflowRegistry, package_type: str, tmp_path: Path) -> None:
    registered = _register(registry, package_type, tmp_path, "cand-a", Status.PENDING)

    got = registry.get(package_type, registered.version)
    assert got == registered
    assert got.package_type == package_type
    assert got.version == 1
    assert got.status == Status.PENDING
    assert got.run_id == "run-cand-a"
    assert got.candidate_key == "cand-a"
    assert got.data_fingerprint == "fp-cand-a-0123456789abcdef"
    assert got.model_type == "xgboost"
    assert got.metrics == METRICS
    assert got.label_stats == LABEL_STATS
    assert isinstance(got.label_stats["count"], int)
    assert got.gate_report.startswith("# Gate report") and got.gate_report.endswith("key cand-a")
    assert got.artifact_uri.endswith("/model/artifacts/model.tar.gz")
    assert len(got.audit) == 1
    creation = got.audit[0]
    assert (creation.who, creation.from_status, creation.to_status) == ("pipeline", None, Status.PENDING)
    assert creation.reason == "gate decision for cand-a" == got.reason
    assert datetime.fromisoformat(got.created_at).utcoffset() is not None
    assert got.created_at == creation.at

    as_dict = got.model_dump(mode="json")
    assert as_dict["status"] == "PendingManualApproval"
    assert as_dict["audit"][0]["to_status"] == "PendingManualApproval"
    json.dumps(as_dict)  # JSON-ready

    mv = _client(registry).get_model_version(registry.model_name(package_type), "1")
    assert mv.description == "PendingManualApproval: gate decision for cand-a"
    assert mv.tags[TAG_STATUS] == "PendingManualApproval"
    assert mv.run_id is not None
    run = _client(registry).get_run(mv.run_id)
    assert {k: v for k, v in run.data.metrics.items() if k in METRICS} == METRICS
    assert run.data.metrics["label_count"] == 1200 and run.data.metrics["label_positive_rate"] == 0.37
    assert run.info.status == "FINISHED"
    assert [v.version for v in registry.list_versions(package_type)] == [1]


def test_long_gate_report_is_truncated_in_the_tag_and_whole_in_the_artifact(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    report = "# Gate report\n\n" + "a long line of the gate report\n" * 1000
    version = _register(registry, package_type, tmp_path, "long", Status.PENDING, gate_report=report)

    mv = _client(registry).get_model_version(registry.model_name(package_type), str(version.version))
    assert all(len(value) <= MAX_TAG_VALUE for value in mv.tags.values())
    assert len(version.gate_report) < len(report)
    assert "truncated" in version.gate_report
    assert mv.run_id is not None
    full = Path(_client(registry).download_artifacts(mv.run_id, GATE_REPORT_FILE, str(tmp_path / "dl")))
    assert full.read_text() == report


def test_register_is_idempotent_on_candidate_key(registry: MlflowRegistry, package_type: str, tmp_path: Path) -> None:
    first = _register(registry, package_type, tmp_path, "same", Status.APPROVED)
    again = _register(
        registry, package_type, tmp_path, "same", Status.REJECTED, reason="a re-run", metrics={"auc": 0.1}
    )

    assert again == first
    assert [v.version for v in registry.list_versions(package_type)] == [first.version]
    assert registry.find_by_candidate_key(package_type, "same") == first
    assert registry.find_by_candidate_key(package_type, "other") is None


def test_champion_is_the_newest_approved_not_the_newest(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    assert registry.champion(package_type) is None
    _register(registry, package_type, tmp_path, "v1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v2", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v3", Status.REJECTED)
    _register(registry, package_type, tmp_path, "v4", Status.PENDING)

    champion = registry.champion(package_type)
    assert champion is not None and champion.version == 2
    assert _alias_version(registry, package_type) == 2
    assert [v.version for v in registry.list_versions(package_type)] == [4, 3, 2, 1]


def test_champion_derives_from_the_audit_trail_and_refuses_a_moved_alias(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v2", Status.PENDING)
    _client(registry).set_registered_model_alias(registry.model_name(package_type), CHAMPION_ALIAS, "2")

    newest = registry.newest_approved(package_type)
    assert newest is not None and newest.version == 1  # never taken from the alias
    with pytest.raises(RegistryError, match=r"champion alias is 'v2'.*packwise registry verify --repair"):
        registry.champion(package_type)


def test_approve_and_reject_move_the_champion_and_append_to_the_audit_trail(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v2", Status.PENDING)

    approved = registry.approve(package_type, 2, who="alice", reason="reviewed the label shift")
    assert approved.status == Status.APPROVED
    assert registry.champion(package_type) == approved
    assert _alias_version(registry, package_type) == 2

    rejected = registry.reject(package_type, 2, who="bob", reason="complaints about crushed mugs")
    assert rejected.status == Status.REJECTED
    champion = registry.champion(package_type)
    assert champion is not None and champion.version == 1
    assert _alias_version(registry, package_type) == 1

    trail = [(e.who, e.from_status, e.to_status, e.reason) for e in rejected.audit]
    assert trail == [
        ("pipeline", None, Status.PENDING, "gate decision for v2"),
        ("alice", Status.PENDING, Status.APPROVED, "reviewed the label shift"),
        ("bob", Status.APPROVED, Status.REJECTED, "complaints about crushed mugs"),
    ]
    times = [datetime.fromisoformat(e.at) for e in rejected.audit]
    assert times == sorted(times)
    assert all(t.utcoffset() is not None and t.utcoffset().total_seconds() == 0 for t in times)  # type: ignore[union-attr]

    registry.reject(package_type, 1, who="bob", reason="also bad")
    assert registry.champion(package_type) is None
    assert _alias_version(registry, package_type) is None


def test_set_status_refuses_no_op_empty_reason_and_unknown_versions(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.APPROVED)

    with pytest.raises(RegistryError, match="already Approved"):
        registry.approve(package_type, 1, who="alice", reason="again")
    with pytest.raises(RegistryError, match="reason is required"):
        registry.reject(package_type, 1, who="alice", reason="  ")
    with pytest.raises(ModelNotFoundError) as err:
        registry.approve(package_type, 9, who="alice", reason="x")
    message = str(err.value)
    assert "\n" not in message
    assert f"no {package_type} model version 9" in message
    assert f"packwise registry list --type {package_type}" in message
    with pytest.raises(ModelNotFoundError):
        registry.get("never_registered", 1)
    with pytest.raises(RegistryError, match="lower_snake_case"):
        registry.get("Bad-Type", 1)
    assert len(registry.get(package_type, 1).audit) == 1  # nothing was written by the refused changes


def test_rollback_rejects_the_champion_and_restores_the_previous_approved(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v2", Status.REJECTED)
    _register(registry, package_type, tmp_path, "v3", Status.APPROVED)

    champion = registry.rollback(package_type, who="carol", reason="returns went up")

    assert champion.version == 1
    assert registry.champion(package_type) == champion
    assert _alias_version(registry, package_type) == 1
    rolled = registry.get(package_type, 3)
    assert rolled.status == Status.REJECTED
    last = rolled.audit[-1]
    assert (last.who, last.from_status, last.to_status) == ("carol", Status.APPROVED, Status.REJECTED)
    assert last.reason == "rolled back: returns went up"
    assert registry.get(package_type, 2).status == Status.REJECTED  # untouched
    assert len(registry.get(package_type, 2).audit) == 1


def test_rollback_without_a_previous_approved_version_fails_and_writes_nothing(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="no Approved version"):
        registry.rollback(package_type, who="carol", reason="x")
    _register(registry, package_type, tmp_path, "v1", Status.REJECTED)
    _register(registry, package_type, tmp_path, "v2", Status.APPROVED)

    with pytest.raises(RegistryError, match="only Approved version") as err:
        registry.rollback(package_type, who="carol", reason="x")
    assert "\n" not in str(err.value)
    assert registry.get(package_type, 2).status == Status.APPROVED
    assert len(registry.get(package_type, 2).audit) == 1


def test_rollback_to_a_version_restores_it_and_rejects_newer_approved(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v2", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v3", Status.PENDING)
    _register(registry, package_type, tmp_path, "v4", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v5", Status.APPROVED)
    registry.reject(package_type, 1, who="dave", reason="bad week")

    champion = registry.rollback(package_type, who="erin", reason="v2+ drifted", to_version=1)

    assert champion.version == 1
    statuses = {v.version: v.status for v in registry.list_versions(package_type)}
    assert statuses == {
        1: Status.APPROVED,
        2: Status.REJECTED,
        3: Status.PENDING,  # never Approved: left alone
        4: Status.REJECTED,
        5: Status.REJECTED,
    }
    assert champion.audit[-1].reason == "restored by rollback: v2+ drifted"
    assert champion.audit[-1].who == "erin"
    for version in (2, 4, 5):
        assert registry.get(package_type, version).audit[-1].reason == "rolled back to v1: v2+ drifted"
    assert _alias_version(registry, package_type) == 1


def test_rollback_to_version_edge_cases(registry: MlflowRegistry, package_type: str, tmp_path: Path) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.PENDING)
    _register(registry, package_type, tmp_path, "v2", Status.APPROVED)
    _register(registry, package_type, tmp_path, "v3", Status.APPROVED)

    with pytest.raises(ModelNotFoundError, match="version 7"):
        registry.rollback(package_type, who="x", reason="x", to_version=7)
    with pytest.raises(RegistryError, match="never Approved"):
        registry.rollback(package_type, who="x", reason="x", to_version=1)
    with pytest.raises(RegistryError, match="already the champion"):
        registry.rollback(package_type, who="x", reason="x", to_version=3)
    with pytest.raises(RegistryError, match="reason is required"):
        registry.rollback(package_type, who="x", reason="", to_version=2)
    assert [len(v.audit) for v in registry.list_versions(package_type)] == [1, 1, 1]

    # v2 is Approved but not champion: only the newer Approved version is rejected.
    champion = registry.rollback(package_type, who="x", reason="v3 is worse", to_version=2)
    assert champion.version == 2
    assert len(champion.audit) == 1
    assert registry.get(package_type, 3).status == Status.REJECTED


def test_failure_in_create_model_version_leaves_nothing_registered(
    registry: MlflowRegistry, package_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(registry, package_type, tmp_path, "champ", Status.APPROVED)
    runs_before = _runs(registry)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise MlflowException("store went away")

    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "create_model_version", boom)
        with pytest.raises(RegistryError, match="nothing was registered") as err:
            _register(registry, package_type, tmp_path, "doomed", Status.APPROVED)
    assert "\n" not in str(err.value)
    assert "store went away" in str(err.value)

    assert [v.candidate_key for v in registry.list_versions(package_type)] == ["champ"]
    champion = registry.champion(package_type)
    assert champion is not None and champion.candidate_key == "champ"
    assert _alias_version(registry, package_type) == 1
    assert _runs(registry) == runs_before  # the run made for it is deleted too (its pipeline's parent stays)

    retried = _register(registry, package_type, tmp_path, "doomed", Status.APPROVED)
    assert retried.candidate_key == "doomed"
    assert registry.champion(package_type) == retried


@pytest.mark.parametrize("step", ["set_terminated", "set_registered_model_alias"])
def test_failure_after_the_version_exists_deletes_it(
    registry: MlflowRegistry, package_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    _register(registry, package_type, tmp_path, "champ", Status.APPROVED)
    real = getattr(MlflowClient, step)
    calls = {"n": 0}

    def fail_once(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, step, fail_once)
    with pytest.raises(RegistryError, match="disk full"):
        _register(registry, package_type, tmp_path, "doomed", Status.APPROVED)
    monkeypatch.undo()

    assert [v.version for v in registry.list_versions(package_type)] == [1]
    assert registry.find_by_candidate_key(package_type, "doomed") is None
    with pytest.raises(ModelNotFoundError):
        registry.get(package_type, 2)
    assert _alias_version(registry, package_type) == 1


def test_failure_while_changing_status_keeps_status_and_audit_trail(
    registry: MlflowRegistry, package_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(registry, package_type, tmp_path, "v1", Status.PENDING)
    real = MlflowClient.set_model_version_tag

    def fail_on_status(self: MlflowClient, name: str, version: str, key: str, value: Any) -> None:
        if key == TAG_STATUS:
            raise MlflowException("locked")
        real(self, name, version, key, value)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", fail_on_status)
    with pytest.raises(RegistryError, match="status is unchanged"):
        registry.approve(package_type, 1, who="alice", reason="ok")
    monkeypatch.undo()

    version = registry.get(package_type, 1)
    assert version.status == Status.PENDING
    assert len(version.audit) == 1
    assert registry.approve(package_type, 1, who="alice", reason="ok").audit[-1].who == "alice"


def test_download_model_returns_a_byte_identical_file(
    registry: MlflowRegistry, package_type: str, tmp_path: Path
) -> None:
    source = tmp_path / "model"  # a KFP output artifact has no extension: it is stored as model.tar.gz
    source.write_bytes(bytes(range(256)) * 512)
    version = _register(registry, package_type, tmp_path, "bin", Status.APPROVED, model_file=source)

    path = registry.download_model(package_type, version.version, tmp_path / "out")

    assert path == tmp_path / "out" / "model.tar.gz"
    assert path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.tar.gz"]
    with pytest.raises(ModelNotFoundError):
        registry.download_model(package_type, 5, tmp_path / "out")

    named = tmp_path / "named" / "model.tar.gz"  # already the stored name: uploaded as it is
    named.parent.mkdir()
    named.write_bytes(b"\x1f\x8b other model")
    second = _register(registry, package_type, tmp_path, "named", Status.PENDING, model_file=named)
    assert registry.download_model(package_type, second.version, tmp_path / "out2").read_bytes() == named.read_bytes()
    assert registry.download_model(package_type, version.version, tmp_path / "out").read_bytes() == source.read_bytes()


def test_register_refuses_bad_input_before_writing(registry: MlflowRegistry, package_type: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        _register(registry, package_type, tmp_path, "k", Status.APPROVED, model_file=tmp_path / "missing.tar.gz")
    with pytest.raises(RegistryError, match="reason is required"):
        _register(registry, package_type, tmp_path, "k", Status.APPROVED, reason="")
    with pytest.raises(RegistryError, match="lower_snake_case"):
        _register(registry, "Box Large", tmp_path, "k", Status.APPROVED)
    assert registry.list_versions(package_type) == []


def test_list_versions_spans_package_types_newest_first(registry: MlflowRegistry, tmp_path: Path) -> None:
    other = MlflowRegistry(
        tracking_uri=registry.tracking_uri, artifact_root=registry.artifact_root, model_name_prefix="scratch"
    )
    _register(other, "zz_scratch", tmp_path, "elsewhere", Status.APPROVED)
    a = _register(registry, "zz_list_a", tmp_path, "a1", Status.APPROVED)
    b = _register(registry, "zz_list_b", tmp_path, "b1", Status.PENDING)
    a2 = _register(registry, "zz_list_a", tmp_path, "a2", Status.PENDING)

    listed = [v for v in registry.list_versions() if v.package_type.startswith("zz_")]
    assert [(v.package_type, v.version) for v in listed] == [
        (a2.package_type, a2.version),
        (b.package_type, b.version),
        (a.package_type, a.version),
    ]
    assert all(v.package_type != "zz_scratch" for v in registry.list_versions())


def test_open_registry_needs_a_resolved_config_and_writes_nothing_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RegistryError, match=r"PackwiseConfig\.resolved\(\)"):
        open_registry(RegistryConfig())

    monkeypatch.chdir(tmp_path)
    config = PackwiseConfig().model_copy(
        update={"storage": PackwiseConfig().storage.model_copy(update={"root": tmp_path / "state"})}
    )
    registry = open_registry(config.resolved().registry)
    assert isinstance(registry, MlflowRegistry)
    assert isinstance(registry, Registry)
    assert not (tmp_path / "state").exists()  # opening writes nothing

    (tmp_path / "m.tar.gz").write_bytes(b"x")
    registry.register(Candidate(
        package_type="bag", model_file=tmp_path / "m.tar.gz", status=Status.APPROVED, candidate_key="k",
        data_fingerprint="fp", model_type="xgboost", metrics={"auc": 0.9}, label_stats={"count": 3},
        gate_report="ok", reason="first", who="me", run_id="r",
    ))  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tar.gz", "state"]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["mlartifacts", "mlflow.db", "mlflow.db.lock"]


_CONCURRENT_TASK = """
import sys
from pathlib import Path
from packwise.registry import Candidate, Status
from packwise.registry.mlflow_backend import MlflowRegistry

root, package_type = Path(sys.argv[1]), sys.argv[2]
registry = MlflowRegistry(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=(root / "art").as_uri())
model = root.parent / f"{package_type}.tar.gz"
model.write_bytes(package_type.encode())
registry.register(Candidate(
    package_type=package_type, model_file=model, status=Status.APPROVED, candidate_key="k", data_fingerprint="f",
    model_type="xgboost", metrics={}, label_stats={}, gate_report="", reason="ok", who="task", run_id="r",
))
"""


def test_parallel_tasks_can_create_a_fresh_sqlite_store_together(tmp_path: Path) -> None:
    # The pipeline's per-type tasks open a registry that may not exist yet; concurrent migrations of one
    # sqlite file break it unless its creation is serialised.
    root = tmp_path / "state"
    types = ["own_container", "bag", "mailer", "box"]
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONCURRENT_TASK, str(root), t], stderr=subprocess.PIPE, text=True)
        for t in types
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    registry = MlflowRegistry(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=(root / "art").as_uri())
    assert sorted(v.package_type for v in registry.list_versions()) == sorted(types)


def test_importing_the_registry_package_does_not_import_mlflow() -> None:
    code = "import sys, packwise.registry; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _runs(registry: MlflowRegistry) -> list[str]:
    experiment = _client(registry).get_experiment_by_name("packwise-models")
    assert experiment is not None
    runs = _client(registry).search_runs([experiment.experiment_id], "tags.`packwise.role` = 'candidate'")
    return sorted(r.info.run_id for r in runs)
