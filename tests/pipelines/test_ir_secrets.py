"""Secrets never reach the compiled IR: the webhook URL and MLflow credentials travel as env var names only.

`notify.webhook_url` and a tracking URI with `user:password@` were once plain pipeline parameters, so
they sat in the IR defaults, in every run's parameters and in the KFP UI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packwise.config import parse_config
from packwise_app.cli import app
from packwise_app.cluster import run_arguments
from packwise_components.images import ImageSet

TOKEN = "xoxb-T0KEN-never-in-ir-4c3b2a"
WEBHOOK = f"https://hooks.example/services/{TOKEN}"


@pytest.mark.parametrize("for_cluster", [False, True])
def test_a_webhook_pipeline_compiles_with_the_reference_and_never_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, for_cluster: bool
) -> None:
    from packwise_pipelines.compile import compile_all, compile_for_cluster

    monkeypatch.setenv("PACKWISE_WEBHOOK_URL", WEBHOOK)  # what the operator's shell or the Secret holds
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", TOKEN)
    config = parse_config(
        {
            "storage": {"root": "/mnt/packwise"},
            "notify": {"backend": "webhook", "webhook_url_env": "PACKWISE_WEBHOOK_URL"},
            "registry": {"tracking_uri": "http://mlflow.kubeflow.svc:5000"},
        }
    ).resolved()
    compile_fn = compile_for_cluster if for_cluster else compile_all
    paths = compile_fn(config, tmp_path, ImageSet(registry="registry.example/ml", tag="1.2.3"))
    assert {p.name for p in paths} == {"training.yaml", "inference.yaml"}
    for path in paths:
        text = path.read_text()
        assert TOKEN not in text and "hooks.example" not in text, path.name
        docs = list(yaml.safe_load_all(text))
        notify = json.loads(docs[0]["root"]["inputDefinitions"]["parameters"]["notify_json"]["defaultValue"])
        assert notify["backend"] == "webhook" and notify["webhook_url_env"] == "PACKWISE_WEBHOOK_URL"
        if for_cluster:  # the value reaches the task pods from the Secret, by reference
            executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
            refs = {e["envVar"] for spec in executors.values() for e in spec["secretAsEnv"][0]["keyToEnv"]}
            assert "PACKWISE_WEBHOOK_URL" in refs
            # every task carries the label MLflow's NetworkPolicy admits (manifests/components/mlflow)
            for label, spec in executors.items():
                assert spec["podMetadata"]["labels"]["app.kubernetes.io/part-of"] == "packwise", label
        # and the run parameters a submit sends carry the name, not the value
        arguments = run_arguments(path, config, {"run_id": "r1", "week": 2} if "training" in path.name else {})
        assert TOKEN not in json.dumps(arguments, default=str)


def test_compile_refuses_the_old_webhook_url_key_without_printing_it(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"notify": {"backend": "webhook", "webhook_url": WEBHOOK}}))
    result = CliRunner().invoke(app, ["compile", "--config", str(config), "--out", str(tmp_path / "build")])
    assert result.exit_code == 2, result.output
    assert "notify.webhook_url is no longer accepted" in result.output
    assert TOKEN not in result.output and "hooks.example" not in result.output
    assert not (tmp_path / "build").exists()


def test_the_warehouse_dsn_variable_reaches_every_cluster_task_from_the_secret_by_its_configured_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DSN variable the operator named (not one of cluster.secret_keys' defaults) still reaches the pods."""
    from packwise_pipelines.compile import compile_for_cluster

    dsn = "postgresql://packwise:s3cr3t-pw@warehouse.internal:5432/retail"
    monkeypatch.setenv("ACME_RETAIL_DSN", dsn)
    config = parse_config(
        {
            "storage": {"root": "s3://acme-ml/packwise"},
            "warehouse": {"backend": "postgres", "dsn_env": "ACME_RETAIL_DSN"},
            "registry": {"tracking_uri": "http://mlflow.kubeflow.svc:5000"},
        }
    ).resolved()
    assert "ACME_RETAIL_DSN" not in config.cluster.secret_keys
    for path in compile_for_cluster(config, tmp_path, ImageSet(registry="registry.example/ml", tag="1.2.3")):
        text = path.read_text()
        assert "s3cr3t-pw" not in text, path.name
        executors = list(yaml.safe_load_all(text))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for label, spec in executors.items():
            refs = {e["envVar"] for e in spec["secretAsEnv"][0]["keyToEnv"]}
            assert "ACME_RETAIL_DSN" in refs, label
