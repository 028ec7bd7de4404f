"""What a new user meets first: adding products to the warehouse, compiling for a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packwise.predictions import WATERMARKS
from packwise.warehouse.duckdb import DuckDBWarehouse
from packwise_app.cli import app


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_add_products_appends_after_the_newest_product_and_the_last_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _invoke("seed", "--add-products", "10")
    assert code == 2 and "run `packwise seed` first" in out
    code, out = _invoke("seed", "--products", "300", "--weeks", "2", "--labels-per-week", "40")
    assert code == 0, out
    db = tmp_path / ".packwise" / "warehouse.duckdb"
    with DuckDBWarehouse(db) as wh:
        before = wh.fetch_df("SELECT * FROM products ORDER BY product_id")
        n_labels = wh.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0]
        # a daily run loaded up to a time after the newest product: the new ones must come after it
        wh.execute(f"INSERT INTO {WATERMARKS} (pipeline, mode, watermark) "
                   "VALUES ('inference', 'daily', TIMESTAMP '2030-01-01 00:00:00')")  # fmt: skip

    code, out = _invoke("seed", "--add-products", "25")
    assert code == 0, out
    assert "added 25 products" in out and "2030-01-01 01:00" in out
    code, out = _invoke("seed", "--add-products", "5", "--seed", "8")
    assert code == 0, out

    with DuckDBWarehouse(db) as wh:
        after = wh.fetch_df("SELECT * FROM products ORDER BY product_id")
        assert wh.fetch_df("SELECT count(*) AS n FROM labels")["n"].iloc[0] == n_labels
    assert len(after) == 330
    old = after[after["product_id"].isin(before["product_id"])].reset_index(drop=True)
    assert old.equals(before)  # the existing catalogue is untouched
    new = after[~after["product_id"].isin(before["product_id"])]
    assert new["product_id"].tolist() == [f"P{i:07d}" for i in range(301, 331)]
    assert sorted(new["added_at"].astype(str).unique()) == ["2030-01-01 01:00:00", "2030-01-01 02:00:00"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add-products", "0"], "add at least 1 product"),
        (["--add-products", "5", "--shift", "mailer:2:0.1"], "label knobs apply only to a full seed"),
    ],
)
def test_add_products_refuses_bad_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _invoke("seed", "--products", "50", "--weeks", "1", "--labels-per-week", "10")[0] == 0
    code, out = _invoke("seed", *args)
    assert code == 2 and message in out


def test_compile_without_a_config_builds_the_in_cluster_defaults_not_this_machines_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _invoke("compile", "--out", str(tmp_path / "build"))
    assert code == 0, out
    assert "compiling the in-cluster defaults" in out
    text = (tmp_path / "build" / "training.yaml").read_text()
    assert str(tmp_path) not in text.replace(str(tmp_path / "build"), "")
    params = next(yaml.safe_load_all(text))["root"]["inputDefinitions"]["parameters"]
    assert params["storage_root"]["defaultValue"] == "s3://mlpipeline/packwise/storage"
    registry = json.loads(params["registry_json"]["defaultValue"])
    assert registry["tracking_uri"] == "http://mlflow.packwise.svc.cluster.local:5000"


def test_compile_refuses_a_config_with_machine_local_paths(tmp_path: Path) -> None:
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": ".packwise"}}))
    code, out = _invoke("compile", "-c", str(config), "--out", str(tmp_path / "build"))
    assert code == 2
    assert "storage.root '.packwise'" in out and "registry.tracking_uri unset" in out
    assert "-c cluster.yaml" in out and "--set storage.root=s3://bucket/prefix" in out
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("split.train_ratoi", "'split.train_ratio'"), ("gate.min_acu", "'gate.min_auc'"), ("storgae.root", "'storage'")],
)
def test_a_misspelt_set_key_gets_a_did_you_mean(key: str, suggestion: str) -> None:
    code, out = _invoke("config", "show", "--set", f"{key}=1")
    assert code == 2
    assert f"did you mean {suggestion}?" in out and len(out.strip().splitlines()) == 1


def test_a_key_like_nothing_gets_no_suggestion() -> None:
    code, out = _invoke("config", "show", "--set", "zzz.qqq=1")
    assert code == 2 and "did you mean" not in out and "unknown key 'zzz'" in out


@pytest.mark.parametrize(
    "args",
    [
        ["registry", "show", "mialer", "2"],
        ["registry", "approve", "mialer", "2", "--reason", "x"],
        ["registry", "rollback", "mialer", "--reason", "x"],
        ["infer", "--mode", "monthly", "--model", "mialer=2"],
    ],
)
def test_an_unknown_package_type_is_not_a_configured_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _invoke(*args)
    assert code == 2, out
    assert "'mialer' is not a configured type; configured: own_container, bag, mailer, box" in out
    assert "did you mean 'mailer'?" in out


def test_infer_before_any_training_fails_before_the_pipeline_naming_packwise_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _invoke("infer", "--mode", "daily")
    assert code == 2 and "packwise train --week 1" in out
    assert not (tmp_path / ".packwise" / "kfp").exists()  # no pipeline started


def test_infer_with_a_registry_but_no_champion_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from packwise.config import load_config
    from packwise.registry import open_registry

    monkeypatch.chdir(tmp_path)
    assert open_registry(load_config().resolved().registry).list_versions() == []  # an empty registry
    code, out = _invoke("infer", "--mode", "monthly")
    assert code == 2 and "no Approved model for package types" in out and "packwise train --week N" in out
    assert not (tmp_path / ".packwise" / "kfp").exists()


def test_mode_and_runner_are_choices_listed_in_the_help() -> None:
    code, out = _invoke("infer", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "daily|monthly" in flat and "subprocess|docker" in flat
    assert "KEY=VALUE" in flat and "list[str]" not in flat
    code, out = _invoke("infer", "--mode", "weekly")
    assert code == 2 and "weekly" in out
    code, out = _invoke("--help")
    assert "--install-completion" in out


@pytest.mark.parametrize("args", [[], ["train"], ["infer"], ["registry", "approve"], ["schedule", "apply"]])
def test_flags_show_no_type_in_the_help(args: list[str]) -> None:
    """An on/off switch takes no value, so its help row shows none (typer 0.29 prints `<bool>`)."""
    code, out = _invoke(*args, "--help")
    assert code == 0, out
    assert "<bool>" not in out and "--help" in out


def _write_summaries(root: Path) -> None:
    import os

    runs = root / ".packwise" / "runs"
    runs.mkdir(parents=True)
    training = {
        "run_id": "training-1", "week": 2, "pipeline_state": "SUCCEEDED", "fingerprint": "ab" * 32, "error": None,
        "package_types": [
            {"package_type": "bag", "decision": "Approved", "version": 2, "candidate": {"auc": 0.91, "pr_auc": 0.8},
             "champion_scores": {"auc": 0.9, "pr_auc": 0.79}},
            {"package_type": "mailer", "decision": "PendingManualApproval", "version": 2,
             "candidate": {"auc": 0.9043, "pr_auc": 0.8}, "champion_scores": {"auc": 0.92, "pr_auc": 0.81}},
        ],
    }  # fmt: skip
    inference = {
        "run_id": "inference-daily-1", "mode": "daily", "pipeline": "inference", "pipeline_state": "SUCCEEDED",
        "n_products": 500, "loaded": True, "models": {"bag": 2, "mailer": 1}, "models_pinned": [],
        "package_types": [{"package_type": "bag", "count": 500, "share": 1.0, "change": None}],
    }  # fmt: skip
    (runs / "training-1.summary.json").write_text(json.dumps(training))
    (runs / "training-1.json").write_text("{}")  # the run record itself is not a summary
    (runs / "inference-daily-1.summary.json").write_text(json.dumps(inference))
    os.utime(runs / "training-1.summary.json", (1_000_000, 1_000_000))  # older


def test_runs_lists_recent_runs_newest_first_and_shows_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _invoke("runs")
    assert code == 0 and "no runs under" in out
    _write_summaries(tmp_path)
    code, out = _invoke("runs")
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith(("training-", "inference-"))]
    assert [line.split()[0] for line in lines] == ["inference-daily-1", "training-1"]
    assert "500 scored, loaded" in lines[0] and "1 Approved, 1 Pending" in lines[1]
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out = _invoke("runs", "training-1")
    assert code == 0 and "PendingManualApproval" in out and "0.9043" in out
    code, out = _invoke("runs", "inference-daily-1")
    assert code == 0 and "daily run: 500 products scored, loaded" in out
    code, out = _invoke("runs", "--json")
    assert [s["run_id"] for s in json.loads(out)] == ["inference-daily-1", "training-1"]
    code, out = _invoke("runs", "training-1", "--json")
    assert json.loads(out)["week"] == 2


def test_runs_with_a_corrupt_or_missing_summary_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write_summaries(tmp_path)
    code, out = _invoke("runs", "nope")
    assert code == 2 and "no summary for run 'nope'" in out and len(out.strip().splitlines()) == 1
    (tmp_path / ".packwise" / "runs" / "training-1.summary.json").write_text('{"run_id": "train')
    for args in (["runs"], ["runs", "training-1"]):
        code, out = _invoke(*args)
        assert code == 2, out
        assert "training-1.summary.json is corrupt" in out and len(out.strip().splitlines()) == 1


def test_submit_prints_the_equivalent_kfp_run_create_line() -> None:
    import shlex

    from packwise.config import load_config
    from packwise_app.cluster_cli import kfp_command_line

    cfg = load_config(None, ["cluster.host=http://localhost:8888"])
    line = kfp_command_line(cfg, "inference", {"mode": "monthly", "pinned_models": {"mailer": 1}}, "nightly")
    assert shlex.split(line) == [
        "kfp", "--endpoint", "http://localhost:8888", "run", "create", "-e", "packwise",
        "-f", "build/inference.yaml", "-r", "nightly", "mode=monthly", 'pinned_models={"mailer": 1}',
    ]  # fmt: skip
    # kfp 2.x's CLI has `run create` and no `run submit`
    from kfp.cli.run import run as kfp_run

    assert "create" in kfp_run.commands and "submit" not in kfp_run.commands


@pytest.mark.parametrize(
    ("args", "typo", "suggestion"),
    [
        (["trian", "--week", "1"], "trian", "'train'"),
        (["registy", "list"], "registy", "'registry'"),
        (["registry", "aprove", "mailer", "2"], "aprove", "'approve'"),
        (["config", "shwo"], "shwo", "'show'"),
        (["schedule", "aply"], "aply", "'apply'"),
    ],
)
def test_a_misspelt_command_gets_a_did_you_mean_at_every_level(args: list[str], typo: str, suggestion: str) -> None:
    # click's own suggestion (difflib over the group's commands), for the top level and for every group
    code, out = _invoke(*args)
    flat = " ".join(out.replace("│", " ").split())
    assert code == 2
    assert f"No such command '{typo}'. Did you mean {suggestion}" in flat


def test_a_misspelt_option_names_the_close_one() -> None:
    code, out = _invoke("train", "--weak", "1")
    assert code == 2 and "No such option: --weak" in out and "--week" in out


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint from the environment, no kube config, not in a pod; compiling would fail the test."""
    import packwise_app.cluster as cluster

    for name in ("KF_PIPELINES_ENDPOINT", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled before the cluster was found reachable")

    monkeypatch.setattr(cluster, "compile_pipeline", no_compile)


def _error_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error:")]


def test_submit_to_an_unreachable_host_fails_in_one_line_before_compiling(no_kube: None) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    code, out = _invoke("submit", "training", "--week", "1", "--set", f"cluster.host={host}")
    assert code == 2, out
    (line,) = _error_lines(out)
    assert f"cannot reach Kubeflow Pipelines at {host} (connection to 127.0.0.1:" in line and "refused" in line
    assert "check that the KFP API is up" in line and "kubectl port-forward -n kubeflow svc/ml-pipeline" in line
    assert "Traceback" not in out and "HTTPConnectionPool" not in out
    code, out = _invoke("submit", "training", "--week", "1", "--set", "cluster.host=http://no-such-kfp.invalid:8888")
    assert code == 2 and "unknown host name 'no-such-kfp.invalid'" in out


def test_submit_without_any_endpoint_says_to_set_cluster_host(no_kube: None) -> None:
    code, out = _invoke("submit", "inference", "--mode", "daily")
    assert code == 2, out
    (line,) = _error_lines(out)
    assert "no Kubeflow Pipelines endpoint: cluster.host is unset" in line and "--set cluster.host=" in line
    assert "kube config." not in out


def test_kfps_kube_config_print_is_not_shown(tmp_path: Path, no_kube: None, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("garbage: [\n")
    monkeypatch.setenv("KUBECONFIG", str(bad))  # kfp tries it, prints "Failed to load kube config.", goes on
    code, out = _invoke("schedule", "list")
    assert code == 2, out
    assert "Failed to load kube config" not in out
    (line,) = _error_lines(out)
    assert "cannot reach Kubeflow Pipelines at the kube config's cluster" in line
