"""packwise_app.cluster: submit, schedules (idempotent), retry; and the compiled YAML through kfp's own loaders.

Two stand-ins for a KFP deployment, neither of which needs a cluster:
- `RecordingKfpClient` has kfp.Client's methods and records every call (unit tests of the wrapper);
- `FakeKfpApi` is a tiny HTTP server on 127.0.0.1 speaking the v2beta1 REST paths, so the real kfp.Client
  and the real `kfp run create` CLI run their whole client-side path, HTTP call included.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from packwise.config import PackwiseConfig, parse_config
from packwise.errors import ConfigError
from packwise_app.cluster import Cluster, ClusterError, connect, run_arguments, validate_params

# ---- a recording kfp.Client ----------------------------------------------------------------------------


@dataclass
class RecordingKfpClient:
    """kfp.Client's methods that Packwise calls, recording each call; runs and schedules live in memory."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    runs: dict[str, SimpleNamespace] = field(default_factory=dict)
    recurring: dict[str, SimpleNamespace] = field(default_factory=dict)
    experiments: dict[str, str] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._run_api = SimpleNamespace(run_service_retry_run=self._retry)

    def _record(self, call: str, /, **kwargs: Any) -> None:
        self.calls.append((call, kwargs))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for call, kwargs in self.calls if call == name]

    def create_experiment(self, name: str, description: str | None = None, namespace: str | None = None) -> Any:
        self._record("create_experiment", name=name)
        self.experiments.setdefault(name, f"exp-{len(self.experiments) + 1}")
        return SimpleNamespace(experiment_id=self.experiments[name], display_name=name)

    def create_run_from_pipeline_package(self, pipeline_file: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
        spec = list(yaml.safe_load_all(Path(pipeline_file).read_text()))
        self._record("create_run_from_pipeline_package", pipeline_spec=spec, arguments=arguments, **kwargs)
        run_id = f"run-{next(self._ids)}"
        self.runs[run_id] = SimpleNamespace(run_id=run_id, display_name=kwargs.get("run_name"), state="PENDING")
        return SimpleNamespace(run_id=run_id)

    def list_runs(self, experiment_id: str | None = None, page_size: int = 10, filter: str | None = None) -> Any:
        self._record("list_runs", experiment_id=experiment_id, filter=filter)
        wanted = None
        if filter:
            wanted = json.loads(filter)["predicates"][0]["stringValue"]
        runs = [r for r in self.runs.values() if wanted is None or r.display_name == wanted]
        return SimpleNamespace(runs=runs or None, next_page_token=None)

    def get_run(self, run_id: str) -> Any:
        self._record("get_run", run_id=run_id)
        return self.runs[run_id]

    def _retry(self, run_id: str) -> dict[str, Any]:
        self._record("retry_run", run_id=run_id)
        self.runs[run_id].state = "RUNNING"
        return {}

    def list_recurring_runs(self, experiment_id: str, page_size: int = 10, page_token: str = "") -> Any:
        self._record("list_recurring_runs", experiment_id=experiment_id, page_token=page_token)
        items = list(self.recurring.values())
        start = int(page_token or 0)
        page = items[start : start + 2]  # small pages: the wrapper must follow next_page_token
        token = str(start + 2) if start + 2 < len(items) else None
        return SimpleNamespace(recurring_runs=page or None, next_page_token=token)

    def create_recurring_run(self, experiment_id: str, job_name: str, **kwargs: Any) -> Any:
        self._record("create_recurring_run", experiment_id=experiment_id, job_name=job_name, **kwargs)
        rid = f"rr-{next(self._ids)}"
        self.recurring[rid] = SimpleNamespace(
            recurring_run_id=rid,
            display_name=job_name,
            description=kwargs.get("description"),
            mode="ENABLE" if kwargs.get("enabled", True) else "DISABLE",
            trigger=SimpleNamespace(cron_schedule=SimpleNamespace(cron=kwargs.get("cron_expression"))),
        )
        return self.recurring[rid]

    def delete_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        self._record("delete_recurring_run", recurring_run_id=recurring_run_id)
        del self.recurring[recurring_run_id]
        return {}


def cluster_config(tmp_path: Path, **cluster: Any) -> PackwiseConfig:
    data: dict[str, Any] = {
        "storage": {"root": "/mnt/packwise"},
        "warehouse": {"path": "/mnt/packwise/warehouse.duckdb"},
        "registry": {"tracking_uri": "http://mlflow.packwise.svc.cluster.local:5000"},
        "cluster": {"experiment": "packwise", **cluster},
    }
    return parse_config(data, "test")


@pytest.fixture
def recording() -> RecordingKfpClient:
    return RecordingKfpClient()


# ---- parameters ---------------------------------------------------------------------------------------


def test_params_are_checked_with_one_line_errors() -> None:
    assert validate_params("training", {"week": 3}) == {"run_id": "", "week": 3}
    assert validate_params("inference", {"mode": "monthly"})["pinned_models"] == {}
    with pytest.raises(ConfigError, match="training has no parameter 'weeks'; its parameters: run_id, week"):
        validate_params("training", {"weeks": 3})
    with pytest.raises(ConfigError, match="training needs the parameter 'week'"):
        validate_params("training", {})
    with pytest.raises(ConfigError, match="mode"):
        validate_params("inference", {"mode": "hourly"})
    with pytest.raises(ConfigError, match="unknown pipeline 'scoring'"):
        validate_params("scoring", {})


def test_submit_passes_every_pipeline_parameter_from_the_config(tmp_path: Path, recording: RecordingKfpClient) -> None:
    config = cluster_config(tmp_path, service_account="packwise-runner", pipeline_root="s3://b/kfp")
    cluster = Cluster(recording, config)
    run = cluster.submit("training", {"week": 3})
    (call,) = recording.named("create_run_from_pipeline_package")
    inputs = set(call["pipeline_spec"][0]["root"]["inputDefinitions"]["parameters"])
    assert set(call["arguments"]) == inputs  # nothing left to a compile-time default
    assert call["arguments"]["week"] == 3
    assert call["arguments"]["model_json"] == config.section_json("model")
    assert call["arguments"]["gate_json"] == config.section_json("gate")
    assert call["arguments"]["storage_root"] == "/mnt/packwise"
    assert call["arguments"]["package_types"] == ["own_container", "bag", "mailer", "box"]
    assert call["service_account"] == "packwise-runner"
    assert call["experiment_name"] == "packwise"
    assert call["pipeline_root"] == "s3://b/kfp"
    assert call["run_name"].startswith("packwise-training-week-3-")
    assert run.run_id == "run-1"

    override = parse_config({**config.model_dump(mode="json"), "model": {"type": "xgboost_text"}}, "t")
    cluster.submit("inference", {"mode": "monthly", "pinned_models": {"bag": 2}}, config=override)
    second = recording.named("create_run_from_pipeline_package")[1]
    assert second["arguments"]["mode"] == "monthly"
    assert second["arguments"]["pinned_models"] == {"bag": 2}
    assert json.loads(second["arguments"]["inference_json"]) == json.loads(config.section_json("inference"))


def test_run_arguments_follow_the_compiled_inputs(tmp_path: Path) -> None:
    package = tmp_path / "p.yaml"
    package.write_text(
        yaml.safe_dump({"root": {"inputDefinitions": {"parameters": {"week": {}, "split_json": {}, "thresholds": {}}}}})
    )
    config = PackwiseConfig()
    args = run_arguments(package, config, {"week": 2, "run_id": ""})
    assert args == {
        "week": 2,
        "split_json": config.section_json("split"),
        "thresholds": {p.name: p.threshold for p in config.package_types},
    }


# ---- schedules ----------------------------------------------------------------------------------------


def test_schedule_apply_is_idempotent(tmp_path: Path, recording: RecordingKfpClient) -> None:
    config = cluster_config(tmp_path)
    first = Cluster(recording, config).apply_schedules()
    assert sorted((c.name, c.action) for c in first) == [
        ("daily-inference", "created"),
        ("monthly-inference", "created"),
        ("weekly-training", "created"),
    ]
    created = recording.named("create_recurring_run")
    assert {c["cron_expression"] for c in created} == {"0 0 3 * * 1", "0 0 5 * * *", "0 0 6 1 * *"}
    weekly = next(c for c in created if c["job_name"] == "weekly-training")
    assert weekly["params"]["week"] == 0 and weekly["max_concurrency"] == 1
    assert weekly["service_account"] == "packwise-runner"

    second = Cluster(recording, config).apply_schedules()  # a new process: nothing but the cluster remembers
    assert {c.action for c in second} == {"unchanged"}
    assert len(recording.named("create_recurring_run")) == 3
    assert not recording.named("delete_recurring_run")
    assert len(recording.recurring) == 3


def test_schedule_apply_replaces_changed_and_deletes_removed(tmp_path: Path, recording: RecordingKfpClient) -> None:
    config = cluster_config(tmp_path)
    Cluster(recording, config).apply_schedules()
    recording.create_recurring_run("exp-1", "someone-elses", description="not ours", cron_expression="0 0 1 * * *")
    data = config.model_dump(mode="json")
    data["cluster"]["schedules"]["daily-inference"]["cron"] = "0 30 4 * * *"
    del data["cluster"]["schedules"]["monthly-inference"]
    changed = Cluster(recording, parse_config(data, "t")).apply_schedules()
    assert sorted((c.name, c.action) for c in changed) == [
        ("daily-inference", "replaced"),
        ("monthly-inference", "deleted"),
        ("weekly-training", "unchanged"),
    ]
    names = sorted(r.display_name for r in recording.recurring.values())
    assert names == ["daily-inference", "someone-elses", "weekly-training"]  # unmanaged ones are left alone


def test_bad_schedule_params_fail_before_anything_is_created(tmp_path: Path, recording: RecordingKfpClient) -> None:
    data = cluster_config(tmp_path).model_dump(mode="json")
    data["cluster"]["schedules"]["weekly-training"]["params"] = {"wek": 1}
    with pytest.raises(ConfigError, match=r"cluster.schedules.weekly-training.params: training has no parameter 'wek'"):
        Cluster(recording, parse_config(data, "t")).apply_schedules()
    with pytest.raises(ConfigError, match="needs 6 fields"):
        data["cluster"]["schedules"]["weekly-training"]["cron"] = "0 3 * * 1"
        parse_config(data, "t")


# ---- retry ----------------------------------------------------------------------------------------------


def test_retry_calls_retry_run_for_a_failed_run_only(tmp_path: Path, recording: RecordingKfpClient) -> None:
    cluster = Cluster(recording, cluster_config(tmp_path))
    recording.runs["r1"] = SimpleNamespace(run_id="r1", display_name="x", state="FAILED")
    assert cluster.retry("r1") == "FAILED"
    assert recording.named("retry_run") == [{"run_id": "r1"}]
    with pytest.raises(ClusterError, match="run r1 is RUNNING; only a FAILED or CANCELED run can be retried"):
        cluster.retry("r1")


# ---- the real kfp.Client and `kfp run create` against a fake KFP API on 127.0.0.1 -------------------


class FakeKfpApi(ThreadingHTTPServer):
    """The v2beta1 REST paths kfp.Client uses to create experiments and runs, list them and retry one."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeKfpApi

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: dict[str, Any], status: int = 200) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.server.requests.append(("GET", url.path, parse_qs(url.query)))
        if url.path == "/apis/v2beta1/healthz":
            return self._send({"multi_user": False})
        if url.path == "/apis/v2beta1/experiments":
            flt = parse_qs(url.query).get("filter", ["{}"])[0]
            wanted = [p.get("string_value") or p.get("stringValue") for p in json.loads(flt).get("predicates", [])]
            found = [e for e in self.server.experiments.values() if e["display_name"] in wanted]
            return self._send({"experiments": found, "total_size": len(found)})
        if url.path == "/apis/v2beta1/runs":
            return self._send({"runs": list(self.server.runs.values()), "total_size": len(self.server.runs)})
        if url.path.startswith("/apis/v2beta1/runs/") and url.path.rsplit("/", 1)[1] in self.server.runs:
            return self._send(self.server.runs[url.path.rsplit("/", 1)[1]])
        return self._send({"error": "not found"}, 404)

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self._body()
        self.server.requests.append(("POST", url.path, body))
        if url.path == "/apis/v2beta1/experiments":
            exp = {"experiment_id": f"e{len(self.server.experiments) + 1}", "display_name": body["display_name"]}
            self.server.experiments[exp["experiment_id"]] = exp
            return self._send(exp)
        if url.path == "/apis/v2beta1/runs":
            run = {
                "run_id": f"r{len(self.server.runs) + 1}",
                "display_name": body["display_name"],
                "experiment_id": body["experiment_id"],
                "state": "PENDING",
                "created_at": "2026-01-05T03:00:00Z",
            }
            self.server.runs[run["run_id"]] = run
            return self._send(run)
        if url.path.endswith(":retry"):
            return self._send({})
        return self._send({"error": "not found"}, 404)


@pytest.fixture
def fake_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKfpApi]:
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp reads ~/.config/kfp/context.json
    server = FakeKfpApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from packwise_pipelines.compile import compile_for_cluster

    out = tmp_path_factory.mktemp("build")
    paths = compile_for_cluster(cluster_config(out), out)
    return {p.stem: p for p in paths}


@pytest.mark.parametrize(
    ("pipeline", "args", "expected"),
    [
        ("training", ["week=2"], {"week": 2}),
        ("inference", ["mode=monthly", 'pinned_models={"bag": 3}'], {"mode": "monthly", "pinned_models": {"bag": 3}}),
    ],
)
def test_kfp_run_create_accepts_the_compiled_yaml(
    fake_kfp: FakeKfpApi, compiled: dict[str, Path], pipeline: str, args: list[str], expected: dict[str, Any]
) -> None:
    from click.testing import CliRunner
    from kfp.cli.cli import cli

    package = compiled[pipeline]
    result = CliRunner().invoke(
        cli, ["--endpoint", fake_kfp.url, "run", "create", "-e", "packwise", "-f", str(package), *args], obj={}
    )  # obj={}: what kfp's console entry point passes
    assert result.exit_code == 0, result.output
    (create,) = [b for m, p, b in fake_kfp.requests if m == "POST" and p == "/apis/v2beta1/runs"]
    docs = list(yaml.safe_load_all(package.read_text()))
    assert create["pipeline_spec"]["pipeline_spec"] == docs[0]  # the IR, unchanged
    assert create["pipeline_spec"]["platform_spec"] == docs[1]  # kfp-kubernetes settings travel with it
    assert create["runtime_config"]["parameters"] == expected
    assert any(p == "/apis/v2beta1/experiments" and m == "POST" for m, p, _ in fake_kfp.requests)


def test_packwise_submit_and_retry_through_the_real_kfp_client(fake_kfp: FakeKfpApi, tmp_path: Path) -> None:
    config = cluster_config(tmp_path, host=fake_kfp.url)
    cluster = connect(config)
    run = cluster.submit("training", {"week": 4})
    (create,) = [b for m, p, b in fake_kfp.requests if m == "POST" and p == "/apis/v2beta1/runs"]
    assert create["service_account"] == "packwise-runner"
    assert create["runtime_config"]["parameters"]["week"] == 4
    assert create["runtime_config"]["parameters"]["gate_json"] == config.section_json("gate")
    assert run.run_id == "r1"
    fake_kfp.runs["r1"]["state"] = "FAILED"
    assert cluster.retry("r1") == "FAILED"
    assert ("POST", "/apis/v2beta1/runs/r1:retry", None) in fake_kfp.requests


def test_cli_submit_reports_bad_params_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from packwise_app.cluster_cli import cluster_app

    result = CliRunner().invoke(cluster_app, ["submit", "training", "--param", "weeks=2"])
    assert result.exit_code == 2
    assert "training has no parameter 'weeks'" in result.output
    assert "Traceback" not in result.output


def test_an_api_error_is_one_line(fake_kfp: FakeKfpApi, tmp_path: Path) -> None:
    cluster = connect(cluster_config(tmp_path, host=fake_kfp.url))
    with pytest.raises(ClusterError, match=r"Kubeflow Pipelines refused to find run nope \(HTTP 404"):
        cluster.retry("nope")
