"""`packwise registry ...` through typer's CliRunner against a real local MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from packwise.config import load_config
from packwise.registry import Candidate, Registry, Status, open_registry
from packwise_app.registry_cli import registry_app

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-cli")


@pytest.fixture(scope="module")
def registry(root: Path) -> Registry:
    return open_registry(load_config(None, [f"storage.root={root}"]).resolved().registry)


@pytest.fixture
def package_type(request: pytest.FixtureRequest) -> str:
    """A package type of its own per test: the store is shared by the module."""
    return "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]


def _invoke(root: Path, *args: str) -> Result:
    # the commands refuse a package type the config does not name: configure the test's own type
    types = [a for a in args if a.startswith("t_")]
    configured = ["--set", "package_types=[" + ", ".join(f"{{name: {t}}}" for t in types) + "]"] if types else []
    return CliRunner().invoke(registry_app, [*args, "--set", f"storage.root={root}", *configured], env=WIDE)


def _seed(registry: Registry, package_type: str, tmp_path: Path, statuses: list[Status]) -> None:
    for i, status in enumerate(statuses, start=1):
        model_file = tmp_path / f"m{i}.tar.gz"
        model_file.write_bytes(b"model %d" % i)
        registry.register(
            Candidate(
                package_type=package_type,
                model_file=model_file,
                status=status,
                candidate_key=f"cand-{i}",
                data_fingerprint=f"{i:02d}fingerprint0123456789",
                model_type="xgboost",
                metrics={"auc": 0.9 + i / 100, "pr_auc": 0.7, "log_loss": 0.3},
                label_stats={"count": 100 * i, "positive_rate": 0.4},
                gate_report=f"# Gate for v{i}\n\n- **auc** above the floor\n- label shift small",
                reason=f"gate said v{i}",
                who="pipeline",
                run_id=f"run-{i}",
            )
        )


def test_list_shows_versions_statuses_and_the_champion_mark(
    root: Path, registry: Registry, package_type: str, tmp_path: Path
) -> None:
    _seed(registry, package_type, tmp_path, [Status.APPROVED, Status.APPROVED, Status.REJECTED])

    result = _invoke(root, "list", "--type", package_type)

    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if package_type in line]
    assert len(rows) == 3
    assert "3" in rows[0] and "Rejected" in rows[0] and "*" not in rows[0]
    assert "2" in rows[1] and "Approved" in rows[1] and "*" in rows[1] and "0.9200" in rows[1]
    assert "gate said v2" in rows[1] and "02fingerprin" in rows[1]
    assert "Approved" in rows[2] and "*" not in rows[2]

    narrow = CliRunner().invoke(
        registry_app, ["list", "--type", package_type, "--set", f"storage.root={root}"], env={"COLUMNS": "80"}
    )
    assert narrow.exit_code == 0
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines())
    assert "gate said v2" in narrow.stdout and "PendingManualApproval" not in narrow.stdout


def test_list_of_an_empty_type_says_so(root: Path, package_type: str) -> None:
    result = _invoke(root, "list", "--type", package_type)
    assert result.exit_code == 0
    assert "no model versions" in result.stdout


def test_show_prints_fields_metrics_gate_report_and_audit(
    root: Path, registry: Registry, package_type: str, tmp_path: Path
) -> None:
    _seed(registry, package_type, tmp_path, [Status.PENDING])
    registry.approve(package_type, 1, who="alice", reason="looked fine to me")

    result = _invoke(root, "show", package_type, "1")

    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("cand-1", "01fingerprint0123456789", "xgboost", "run-1", "pr_auc", "0.9100", "Approved"):
        assert text in out
    assert "Gate for v1" in out and "#" not in out.split("Gate for v1")[0].splitlines()[-1]  # rendered
    assert "alice" in out and "looked fine to me" in out and "PendingManualApproval" in out


def test_approve_and_reject_change_status_and_print_the_champion(
    root: Path, registry: Registry, package_type: str, tmp_path: Path
) -> None:
    _seed(registry, package_type, tmp_path, [Status.APPROVED, Status.PENDING])

    approved = _invoke(root, "approve", package_type, "2", "--reason", "manual review ok", "--who", "alice")
    assert approved.exit_code == 0, approved.output
    assert f"{package_type}: champion is v2" in approved.stdout
    event = registry.get(package_type, 2).audit[-1]
    assert (event.who, event.to_status, event.reason) == ("alice", Status.APPROVED, "manual review ok")

    rejected = _invoke(root, "reject", package_type, "2", "--reason", "returns up")
    assert rejected.exit_code == 0, rejected.output
    assert f"{package_type}: champion is v1" in rejected.stdout
    assert registry.get(package_type, 2).audit[-1].who  # defaults to the current user


def test_rollback_prints_the_new_champion(root: Path, registry: Registry, package_type: str, tmp_path: Path) -> None:
    _seed(registry, package_type, tmp_path, [Status.APPROVED, Status.APPROVED, Status.APPROVED])

    result = _invoke(root, "rollback", package_type, "--reason", "bad week", "--who", "bob")
    assert result.exit_code == 0, result.output
    assert f"{package_type}: champion is v2" in result.stdout
    assert registry.get(package_type, 3).audit[-1].reason == "rolled back: bad week"

    result = _invoke(root, "rollback", package_type, "--to", "1", "--reason", "worse", "--who", "bob")
    assert result.exit_code == 0, result.output
    assert f"{package_type}: champion is v1" in result.stdout
    assert registry.get(package_type, 2).status == Status.REJECTED


@pytest.mark.parametrize(
    "args",
    [
        ["show", "{t}", "42"],
        ["approve", "{t}", "42", "--reason", "x"],
        ["reject", "{t}", "42", "--reason", "x"],
        ["rollback", "{t}", "--to", "42", "--reason", "x"],
    ],
)
def test_unknown_version_is_one_error_line_and_exit_code_2(
    root: Path, registry: Registry, package_type: str, tmp_path: Path, args: list[str]
) -> None:
    _seed(registry, package_type, tmp_path, [Status.APPROVED])

    result = _invoke(root, *[a.format(t=package_type) for a in args])

    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: no {package_type} model version 42")
    assert f"packwise registry list --type {package_type}" in lines[0]
    assert "Traceback" not in result.output


def test_illegal_transition_and_bad_config_are_one_line_errors(
    root: Path, registry: Registry, package_type: str, tmp_path: Path
) -> None:
    _seed(registry, package_type, tmp_path, [Status.APPROVED])

    again = _invoke(root, "approve", package_type, "1", "--reason", "twice")
    assert again.exit_code == 2
    assert again.stderr.startswith("error: ") and "already Approved" in again.stderr

    nothing = _invoke(root, "rollback", package_type, "--reason", "x")
    assert nothing.exit_code == 2 and "only Approved version" in nothing.stderr

    bad = CliRunner().invoke(registry_app, ["list", "--set", "registry.nope=1"], env=WIDE)
    assert bad.exit_code == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "unknown key" in bad.stderr

    missing = CliRunner().invoke(registry_app, ["list", "-c", str(tmp_path / "none.yaml")], env=WIDE)
    assert missing.exit_code == 2 and "no such config file" in missing.stderr


def test_config_file_is_read(root: Path, registry: Registry, package_type: str, tmp_path: Path) -> None:
    _seed(registry, package_type, tmp_path, [Status.PENDING])
    config = tmp_path / "packwise.yaml"
    config.write_text(f"storage:\n  root: {root}\n")

    result = CliRunner().invoke(registry_app, ["list", "-c", str(config), "--type", package_type], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "PendingManualApproval" in result.stdout


def test_verify_reports_a_moved_alias_and_repair_puts_it_back(
    registry: Registry, root: Path, package_type: str, tmp_path: Path
) -> None:
    from packwise.registry.mlflow_backend import CHAMPION_ALIAS, MlflowRegistry

    assert isinstance(registry, MlflowRegistry)
    _seed(registry, package_type, tmp_path, [Status.APPROVED, Status.PENDING])
    assert _invoke(root, "verify", "--type", package_type).exit_code == 0
    registry.client.set_registered_model_alias(registry.model_name(package_type), CHAMPION_ALIAS, "2")

    found = _invoke(root, "verify", "--type", package_type)
    assert found.exit_code == 1
    assert f"drift: {package_type} v1: champion alias is 'v2', audit trail says 'v1'" in found.output
    assert "packwise registry verify --repair" in found.output
    refused = _invoke(root, "show", package_type, "1")
    assert refused.exit_code == 2 and "verify --repair" in refused.output

    repaired = _invoke(root, "verify", "--type", package_type, "--repair", "--who", "carol")
    assert repaired.exit_code == 0, repaired.output
    assert f"repaired {package_type} v1: champion alias" in repaired.output
    assert _invoke(root, "verify", "--type", package_type).exit_code == 0
    event = registry.get(package_type, 1).audit[-1]
    assert (event.action, event.who) == ("repair", "carol")


def test_markup_in_a_reason_is_printed_as_text(
    root: Path, registry: Registry, package_type: str, tmp_path: Path
) -> None:
    model_file = tmp_path / "m.tar.gz"
    model_file.write_bytes(b"model")
    registry.register(
        Candidate(
            package_type=package_type,
            model_file=model_file,
            status=Status.REJECTED,
            candidate_key="cand-markup",
            data_fingerprint="00fingerprint0123456789",
            model_type="xgboost",
            metrics={"auc": 0.9, "pr_auc": 0.7, "log_loss": 0.3},
            label_stats={"count": 100, "positive_rate": 0.4},
            gate_report="# Gate",
            reason="product P[/red]X [bold]broke it",
            who="pipeline",
            run_id="run-markup",
        )
    )
    result = _invoke(root, "list", "--type", package_type)
    assert result.exit_code == 0, result.output
    assert "product P[/red]X [bold]broke it" in result.stdout
