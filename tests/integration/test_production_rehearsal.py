"""The production rehearsal: both pipelines through kfp.local on real servers, no local path shared by tasks.

Started here, on 127.0.0.1: moto's server (S3, SNS, SQS, CloudWatch; `AWS_ENDPOINT_URL` points every boto3
client at it, fake credentials in the environment), PostgreSQL (the warehouse, its DSN only in the variable
`warehouse.dsn_env` names) and `mlflow server` (its store a second PostgreSQL database, its artifacts on the
moto S3). Notifications go to SNS and CloudWatch together. Training weeks 1 and 2, then inference monthly and
daily run with every task sandboxed (tests/task_sandbox: its own empty working directory, and any write to
a local path outside it and its KFP outputs fails the task and is recorded). The same four runs on the
embedded defaults (DuckDB, local storage, MLflow on sqlite) over an identically seeded warehouse must
reach the same gate decisions and the same predictions to the row. Then the load step is SIGKILLed inside
its transaction and run again: one current row per product, the watermark and the run ledger consistent.

One module-scoped fixture runs everything once (CI time); the tests read what it recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from packwise.config import PackwiseConfig, parse_config
from packwise.predictions import PREDICTION_RUNS, PREDICTIONS, read_watermark
from packwise.run_summary import read_summary
from packwise.synthetic import SeedSpec, add_products, seed_warehouse
from packwise.warehouse import open_warehouse
from packwise_pipelines.local import LocalRun, inference_run, training_run
from tests.conftest import make_config
from tests.integration.test_mlflow_server import mlflow_server, sqlalchemy_uri
from tests.postgres_server import PostgresServer
from tests.sagemaker_emulator import FAKE_CREDENTIALS, REGION
from tests.task_sandbox import Sandbox, enable_task_sandbox

pytestmark = pytest.mark.pipeline

TYPES = ["own_container", "bag", "mailer", "box"]
BUCKET = "packwise-rehearsal"
TOPIC = "packwise-runs"
NAMESPACE = "PackwiseRehearsal"
DSN_ENV = "PACKWISE_REHEARSAL_WAREHOUSE_DSN"
SEED = SeedSpec(seed=23, n_products=2_000, weeks=2, labels_per_week=1_200)
DAILY_PRODUCTS = 150
DAILY_ADDED_AT = datetime(2031, 1, 5, 8, 0)
INFERENCE = {"shard_target_rows": 1_000, "batch_rows": 1_024}
MODEL = {"num_boost_round": 50}  # both runs alike; small models keep the rehearsal inside CI's time
STEPS = (("training", "week1"), ("training", "week2"), ("inference", "monthly"), ("inference", "daily"))

# -- storage ------------------------------------------------------------------------------------------
# Production storage: `s3://packwise-rehearsal/store` on the moto server, through packwise.storage (pyarrow.fs);
# every task stages what it reads and writes in its private directory and nothing else is allowed. With
# PACKWISE_REHEARSAL_S3_STORAGE=0 (for debugging only) the store is a local directory of its own, the one
# local path the sandbox then allows.
S3_STORAGE = os.environ.get("PACKWISE_REHEARSAL_S3_STORAGE", "1") != "0"
S3_STORAGE_ROOT = f"s3://{BUCKET}/store"


@dataclass
class Servers:
    aws_endpoint: str
    topic_arn: str
    queue_url: str
    mlflow_uri: str
    warehouse_dsn: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(region_name=REGION).client(service, endpoint_url=self.aws_endpoint)


@dataclass
class Rehearsal:
    servers: Servers
    production: PackwiseConfig
    embedded: PackwiseConfig
    sandbox: Sandbox
    kfp_root: Path
    runs: dict[tuple[str, str], LocalRun] = field(default_factory=dict)
    summaries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    seconds: float = 0.0


# -- servers --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# -- data ----------------------------------------------------------------------------------------------


def seed_both(configs: list[PackwiseConfig]) -> None:
    for config in configs:
        if config.warehouse.backend == "duckdb":
            config.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
        with open_warehouse(config.warehouse) as wh:
            seed_warehouse(wh, SEED)


def add_daily_products(configs: list[PackwiseConfig]) -> None:
    for config in configs:
        with open_warehouse(config.warehouse) as wh:
            assert add_products(wh, DAILY_PRODUCTS, seed=SEED.seed + 1, added_at=DAILY_ADDED_AT) == DAILY_PRODUCTS


def predictions_table(config: PackwiseConfig) -> pd.DataFrame:
    with open_warehouse(config.warehouse, read_only=True) as wh:
        return wh.fetch_df(f"SELECT * FROM {PREDICTIONS} ORDER BY product_id, run_id").reset_index(drop=True)


def run_step(config: PackwiseConfig, pipeline: str, step: str) -> tuple[LocalRun, dict[str, Any]]:
    if pipeline == "training":
        run = training_run(config, int(step.removeprefix("week")), run_id=step)
    else:
        run = inference_run(config, step, run_id=step)
    assert run.succeeded, (
        f"{pipeline} {step} on {config.warehouse.backend}: {run.failed_tasks}\n" + (run.log_path.read_text()[-4000:])
    )
    summary = read_summary(config.storage.root, run.run_id)
    assert summary is not None, f"no summary; see {run.log_path}"
    print(f"rehearsal: {pipeline} {step} on {config.warehouse.backend}: {run.seconds:.1f}s", file=sys.stderr)
    return run, summary


def run_all(config: PackwiseConfig, before_daily: Any) -> dict[tuple[str, str], tuple[LocalRun, dict[str, Any]]]:
    out = {}
    for pipeline, step in STEPS:
        if step == "daily":
            before_daily()
        out[(pipeline, step)] = run_step(config, pipeline, step)
    return out


def start_embedded_runs(config: PackwiseConfig, log: Path) -> subprocess.Popen[bytes]:
    """The four runs on `config` in a child process (this module's `run_all`), output to `log`."""
    script = (
        "import json, sys\n"
        "from packwise.config import PackwiseConfig\n"
        "from tests.integration.test_production_rehearsal import add_daily_products, run_all\n"
        "config = PackwiseConfig.model_validate(json.loads(sys.stdin.read()))\n"
        "run_all(config, lambda: add_daily_products([config]))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=repo,
            env=env,
        )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config.model_dump(mode="json")).encode())  # validated in Python mode (lax)
    proc.stdin.close()
    return proc


@pytest.fixture(scope="module")
def rehearsal(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    started = time.perf_counter()
    base = tmp_path_factory.mktemp("rehearsal")
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        for key, value in FAKE_CREDENTIALS.items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        endpoint = stack.enter_context(moto_server())
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        servers = Servers(endpoint, "", "", "", postgres.create_database())
        s3, sns, sqs = servers.client("s3"), servers.client("sns"), servers.client("sqs")
        s3.create_bucket(Bucket=BUCKET)
        servers.topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
        # what an operator would do to read the alerts: an SQS queue subscribed to the topic
        servers.queue_url = sqs.create_queue(QueueName="packwise-alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=servers.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=servers.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        mlflow_store = sqlalchemy_uri(postgres.create_database())
        servers.mlflow_uri = stack.enter_context(
            mlflow_server(mlflow_store, f"s3://{BUCKET}/mlartifacts", base / "mlflow-server.log")
        )
        mp.setenv(DSN_ENV, servers.warehouse_dsn)

        embedded = make_config(base / "embedded", inference=INFERENCE, model=MODEL)
        local_store = base / "production-store"
        production = parse_config(
            {
                # with an s3 root, kfp.local's own outputs, cache and logs stay in storage.local_dir
                "storage": {"root": S3_STORAGE_ROOT, "local_dir": str(base / "workspace")}
                if S3_STORAGE
                else {"root": str(local_store)},
                "warehouse": {"backend": "postgres", "dsn_env": DSN_ENV},
                "registry": {"tracking_uri": servers.mlflow_uri},
                "notify": {
                    "backends": ["sns", "cloudwatch"],
                    "sns_topic_arn": servers.topic_arn,
                    "cloudwatch_namespace": NAMESPACE,
                    "links": {"KFP run": "https://kfp.example/#/runs/details/{run_id}"},
                },
                "inference": INFERENCE,
                "model": MODEL,
            },
            "rehearsal config",
        ).resolved()
        seed_both([embedded, production])

        # The embedded reference runs in a process of its own, alongside: kfp.local's state is per process,
        # and its sequential stretches leave a core idle that the other pipeline uses. Started before the
        # sandbox is switched on, so it runs as a laptop would (DuckDB writes its own file).
        embedded_log = base / "embedded-runs.log"
        reference = start_embedded_runs(embedded, embedded_log)
        stack.callback(lambda: reference.poll() is None and reference.kill())  # a failure here ends it too

        # kfp.local's pipeline root is where a task writes its own outputs (the KFP artifact channel)
        kfp_root = Path(str(production.storage.pipeline_root))
        allowed = [kfp_root] if S3_STORAGE else [local_store]
        sandbox = enable_task_sandbox(mp, base / "sandbox-violations.log", allow=allowed)
        production_runs = run_all(production, lambda: add_daily_products([production]))
        assert reference.wait(timeout=1800) == 0, embedded_log.read_text()[-6000:]
        embedded_runs = {(pipeline, step): read_summary(embedded.storage.root, step) for pipeline, step in STEPS}
        embedded_predictions = predictions_table(embedded)
        result = Rehearsal(servers, production, embedded, sandbox, kfp_root)
        for key, (run, summary) in production_runs.items():
            result.runs[key], result.summaries[key] = run, summary
        for (pipeline, step), embedded_summary in embedded_runs.items():
            assert embedded_summary is not None, embedded_log.read_text()[-6000:]
            result.summaries[("embedded", f"{pipeline}-{step}")] = embedded_summary
        result.predictions = {"embedded": embedded_predictions, "production": predictions_table(production)}
        result.seconds = time.perf_counter() - started
        yield result


# -- what must show ---------------------------------------------------------------------------------


def _decisions(summary: dict[str, Any]) -> dict[str, str]:
    return {row["package_type"]: row["decision"] for row in summary["package_types"]}


def test_no_task_wrote_to_a_shared_local_path(rehearsal: Rehearsal) -> None:
    assert rehearsal.sandbox.violations() == []
    assert all(run.succeeded for run in rehearsal.runs.values())


@pytest.mark.parametrize("week", ["week1", "week2"])
def test_same_gate_decisions_as_the_embedded_run(rehearsal: Rehearsal, week: str) -> None:
    production = _decisions(rehearsal.summaries[("training", week)])
    embedded = _decisions(rehearsal.summaries[("embedded", f"training-{week}")])
    assert set(production) == set(TYPES)
    assert production == embedded
    if week == "week1":
        assert set(production.values()) == {"Approved"}  # the first model of each type


def test_same_predictions_to_the_row_as_the_embedded_run(rehearsal: Rehearsal) -> None:
    columns = ["product_id", "mode", "is_current", "recommended_type"]
    columns += [f"{prefix}_{t}" for t in TYPES for prefix in ("prob", "model_version")]
    production = rehearsal.predictions["production"]
    embedded = rehearsal.predictions["embedded"]
    assert len(production) == SEED.n_products + DAILY_PRODUCTS
    assert production["product_id"].is_unique  # nothing superseded yet: monthly, then daily over new products
    pd.testing.assert_frame_equal(
        production[columns].reset_index(drop=True), embedded[columns].reset_index(drop=True), check_dtype=False
    )
    assert production["run_id"].tolist() == embedded["run_id"].tolist()


def test_one_sns_message_per_run_with_every_decision(rehearsal: Rehearsal) -> None:
    sqs = rehearsal.servers.client("sqs")
    messages: list[dict[str, Any]] = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=rehearsal.servers.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        batch = got.get("Messages", [])
        if not batch:
            break
        messages += [json.loads(m["Body"]) for m in batch]
    assert len(messages) == len(STEPS), [m.get("Subject") for m in messages]
    bodies = {m["MessageAttributes"]["pipeline"]["Value"]: [] for m in messages}  # type: ignore[var-annotated]
    for m in messages:
        bodies[m["MessageAttributes"]["pipeline"]["Value"]].append(m)
        assert m["TopicArn"] == rehearsal.servers.topic_arn
        assert m["MessageAttributes"]["state"]["Value"] == "ok"
    assert sorted(bodies) == ["inference", "training"]
    assert len(bodies["training"]) == 2 and len(bodies["inference"]) == 2
    for message in bodies["training"]:
        for t in TYPES:
            assert t in message["Message"], message["Message"]
    text = "\n".join(m["Message"] for m in messages)
    for step in ("week1", "week2", "monthly", "daily"):
        assert f"https://kfp.example/#/runs/details/{step}" in text


def _metric_sum(cloudwatch: Any, name: str, dims: dict[str, str]) -> float:
    start, end = datetime(2000, 1, 1), datetime(2100, 1, 1)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    },
                    "Period": 86_400 * 365 * 50,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )
    return float(sum(answer["MetricDataResults"][0]["Values"]))


def test_cloudwatch_metrics_per_package_type_and_run(rehearsal: Rehearsal) -> None:
    cloudwatch = rehearsal.servers.client("cloudwatch")
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]}
    for name in ("Heartbeat", "RunFailed", "Promoted", "Rejected", "CandidateAUC", "AUCChange", "PredictionsLoaded"):
        assert name in names, sorted(names)
    for t in TYPES:
        dims = {"Pipeline": "training", "PackageType": t}
        decisions = [_decisions(rehearsal.summaries[("training", w)])[t] for w in ("week1", "week2")]
        assert _metric_sum(cloudwatch, "Promoted", dims) == decisions.count("Approved")
        assert _metric_sum(cloudwatch, "Rejected", dims) == decisions.count("Rejected")
    assert _metric_sum(cloudwatch, "Heartbeat", {"Pipeline": "training"}) == 2
    assert _metric_sum(cloudwatch, "RunFailed", {"Pipeline": "inference"}) == 0
    loaded = _metric_sum(cloudwatch, "PredictionsLoaded", {"Pipeline": "inference"})
    assert loaded == SEED.n_products + DAILY_PRODUCTS


def test_champions_through_the_mlflow_servers_rest_api(rehearsal: Rehearsal) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=rehearsal.servers.mlflow_uri, registry_uri=rehearsal.servers.mlflow_uri)
    models = rehearsal.summaries[("inference", "monthly")]["models"]
    for t in TYPES:
        champion = client.get_model_version_by_alias(f"packwise-{t}", "champion")
        assert int(champion.version) == int(models[t])
        assert champion.tags["packwise.status"] == "Approved"
    keys = [
        o["Key"]
        for page in rehearsal.servers.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=BUCKET, Prefix="mlartifacts/")
        for o in page.get("Contents", [])
    ]
    assert sum(k.endswith("artifacts/model.tar.gz") for k in keys) >= len(TYPES), keys[:20]


# -- kill and rerun of the load -------------------------------------------------------------------------

_LOAD_SCRIPT = """
import json, os, sys, time
from pathlib import Path
import packwise.faults
from packwise.config import InferenceConfig, WarehouseConfig
from packwise.inference import load_predictions

args = json.loads(sys.argv[1])
real = packwise.faults.maybe_fail

def pause_at_commit(task, package_type=None):
    if (task, package_type) == ("load-predictions", "commit") and args["pause"]:
        print("PAUSED", flush=True)  # everything written, nothing committed
        time.sleep(600)
    real(task, package_type)

packwise.faults.maybe_fail = pause_at_commit
print(json.dumps(load_predictions(
    json.loads(Path(args["plan"]).read_text()), [(Path(f), stats) for f, stats in args["scored"]],
    WarehouseConfig.model_validate_json(args["warehouse"]), InferenceConfig.model_validate_json(args["inference"]),
    args["storage_root"] if "://" in args["storage_root"] else Path(args["storage_root"]),
    args["run_id"], "monthly", None, args["watermark"],
), default=str))
"""


def _load_inputs(kfp_root: Path) -> tuple[Path, list[tuple[Path, dict[str, Any]]]]:
    """The monthly run's scoring plan and its scored shards with their statistics, as kfp.local left them in
    its pipeline root (a shard's statistics are its artifact's metadata, in the task's executor output)."""
    # named packwise-inference-<timestamp>: the first is the monthly run, the second the daily one
    runs = sorted(p for p in kfp_root.iterdir() if p.is_dir() and p.name.startswith("packwise-inference"))
    assert len(runs) == 2, runs
    plans = sorted(runs[0].glob("**/prepare-products/plan"))
    shards = sorted(runs[0].glob("**/score-shard/scored"))
    assert len(plans) == 1 and len(shards) == 2, (plans, shards)
    scored = []
    for shard in shards:
        output = json.loads((shard.parent / "executor_output.json").read_text())
        (artifact,) = output["artifacts"]["scored"]["artifacts"]
        scored.append((shard, json.loads(artifact["metadata"]["stats"])))
    return plans[0], scored


def test_a_load_killed_mid_transaction_and_rerun_leaves_one_current_row_per_product(rehearsal: Rehearsal) -> None:
    cfg = rehearsal.production
    plan, scored = _load_inputs(rehearsal.kfp_root)
    monthly = json.loads(plan.read_text())
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        watermark_before = read_watermark(wh, "monthly")
    before = predictions_table(cfg)
    args = {
        "plan": str(plan),
        "scored": [(str(f), stats) for f, stats in scored],
        "warehouse": cfg.warehouse.model_dump_json(),
        "inference": cfg.inference.model_dump_json(),
        "storage_root": str(cfg.storage.root),
        "run_id": "monthly-rerun",
        "watermark": watermark_before.isoformat() if watermark_before else None,
        "pause": True,
    }
    # run as a task would be: sandboxed (the environment still has the sandbox on)
    command = [sys.executable, "-c", _LOAD_SCRIPT]
    proc = subprocess.Popen([*command, json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # until the load stands inside its transaction, everything written
        seen.append(line)
        if line.strip() == "PAUSED":
            break
    assert seen and seen[-1].strip() == "PAUSED", "".join(seen)[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    pd.testing.assert_frame_equal(predictions_table(cfg), before)  # the killed transaction left nothing
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        assert read_watermark(wh, "monthly") == watermark_before
        ledger = wh.fetch_df(f"SELECT run_id FROM {PREDICTION_RUNS} ORDER BY run_id")
    assert "monthly-rerun" not in ledger["run_id"].tolist()

    rerun = subprocess.run([*command, json.dumps({**args, "pause": False})], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["loaded"] is True

    after = predictions_table(cfg)
    current = after[after["is_current"]]
    assert current["product_id"].is_unique
    assert len(current) == SEED.n_products + DAILY_PRODUCTS
    rerun_rows = current[current["run_id"] == "monthly-rerun"]
    assert len(rerun_rows) == int(monthly["n_products"]) == SEED.n_products
    assert set(current[current["run_id"] != "monthly-rerun"]["run_id"]) == {"daily"}
    # the superseded rows are the monthly run's, kept as history, no longer current
    history = after[~after["is_current"]]
    assert set(history["run_id"]) == {"monthly"} and len(history) == SEED.n_products
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        assert read_watermark(wh, "monthly") == watermark_before
        ledger = wh.fetch_df(f"SELECT run_id, n_products FROM {PREDICTION_RUNS} ORDER BY run_id")
    assert ledger["run_id"].tolist().count("monthly-rerun") == 1
    assert int(ledger.set_index("run_id").loc["monthly-rerun", "n_products"]) == SEED.n_products


def test_rehearsal_wall_time_is_reported(rehearsal: Rehearsal, record_property: Any) -> None:
    """Not a speed assertion (those live in bench/): the time goes into the JUnit properties and the output."""
    record_property("rehearsal_seconds", round(rehearsal.seconds, 1))
    print(f"production rehearsal: {rehearsal.seconds:.1f}s for 8 pipeline runs on 3 servers", file=sys.stderr)
    assert {run.run_id for run in rehearsal.runs.values()} == {step for _, step in STEPS}
