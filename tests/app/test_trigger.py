"""Trigger files against moto's S3 server on 127.0.0.1: one run per file, invalid files moved aside.

The watcher starts runs through the real `packwise.cluster.Cluster` (it compiles the pipelines) on a
recording KFP client, so what is checked is the run a cluster would receive.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packwise.cluster import Cluster
from packwise.config import PackwiseConfig, parse_config
from packwise.trigger import TriggerObject, TriggerWatcher, lambda_handler, parse_trigger
from tests.app.test_cluster import RecordingKfpClient

BUCKET = "packwise-triggers"
PREFIX = "triggers/"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture(scope="module")
def base_config() -> PackwiseConfig:
    return parse_config(
        {
            "storage": {"root": "/mnt/packwise"},
            "warehouse": {"path": "/mnt/packwise/warehouse.duckdb"},
            "cluster": {"trigger": {"bucket": BUCKET, "prefix": PREFIX}},
        },
        "test",
    )


@pytest.fixture(scope="module")
def kfp() -> RecordingKfpClient:
    return RecordingKfpClient()


@pytest.fixture(scope="module")
def cluster(kfp: RecordingKfpClient, base_config: PackwiseConfig) -> Cluster:
    return Cluster(kfp, base_config)  # module scope: the compiled pipelines are reused across tests


def new_runs(kfp: RecordingKfpClient, before: int) -> list[dict[str, Any]]:
    return kfp.named("create_run_from_pipeline_package")[before:]


def watcher(s3: Any, cluster: Cluster, config: PackwiseConfig, owner: str = "w1", **kw: Any) -> TriggerWatcher:
    return TriggerWatcher(s3=s3, bucket=BUCKET, prefix=PREFIX, base_config=config, starter=cluster, owner=owner, **kw)


def keys(s3: Any) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def read(s3: Any, key: str) -> str:
    return str(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


VALID = """
pipeline: training
params: {week: 3}
config:
  model: {type: xgboost_text, num_boost_round: 50}
"""


def test_a_dropped_trigger_file_starts_one_run(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}retrain-text.yaml", Body=VALID.encode())
    (result,) = watcher(s3, cluster, base_config).poll_once()
    assert result.outcome == "started"
    (run,) = new_runs(kfp, before)
    assert run["arguments"]["week"] == 3
    model = json.loads(run["arguments"]["model_json"])
    assert model["type"] == "xgboost_text" and model["num_boost_round"] == 50
    assert run["arguments"]["gate_json"] == base_config.section_json("gate")  # the rest: the cluster's config
    assert run["run_name"].startswith("retrain-text-")
    assert run["service_account"] == "packwise-runner"
    # the file is moved to _done/, its claim records the run
    assert f"{PREFIX}_done/retrain-text.yaml" in keys(s3)
    assert f"{PREFIX}retrain-text.yaml" not in keys(s3)
    (claim_key,) = [k for k in keys(s3) if k.startswith(f"{PREFIX}_claims/")]
    claim = json.loads(read(s3, claim_key))
    assert claim["state"] == "started" and claim["run_id"] == result.run_id and claim["owner"] == "w1"


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("typo.yaml", "pipeline: training\nparms: {week: 3}\n", "unknown key 'parms'"),
        ("week.yaml", "pipeline: training\nparams: {week: 0}\n", "week: Input should be greater than or equal to 1"),
        ("nopipe.json", '{"params": {"week": 3}}', "pipeline: Field required"),
        ("model.yaml", "pipeline: training\nparams: {week: 1}\nconfig: {model: {type: gbm}}\n", "unknown model type"),
        ("key.yaml", "pipeline: training\nparams: {week: 1}\nconfig: {modle: {}}\n", "config.modle cannot be set"),
        ("sa.yaml", "pipeline: training\nparams: {week: 1}\nconfig: {cluster: {service_account: admin}}\n",
         "config.cluster cannot be set by a trigger file"),
        ("sql.yaml", "pipeline: inference\nconfig: {inference: {inventory_query: DROP TABLE x}}\n", "no SQL"),
        ("mode.yaml", "pipeline: inference\nparams: {mode: hourly}\n", "mode"),
        ("broken.yaml", "pipeline: [training\n", "not valid YAML or JSON"),
    ],
)
def test_an_invalid_file_is_moved_aside_with_its_reason_and_starts_nothing(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig, name: str, body: str, reason: str
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{name}", Body=body.encode())
    (result,) = watcher(s3, cluster, base_config).poll_once()
    assert result.outcome == "rejected"
    assert reason in (result.reason or "")
    assert new_runs(kfp, before) == []
    assert f"{PREFIX}{name}" not in keys(s3)
    assert read(s3, f"{PREFIX}_rejected/{name}") == body  # moved as it was
    written = read(s3, f"{PREFIX}_rejected/{name}.reason.txt")
    assert reason in written and written.count("\n") == 1  # one line
    # and seen again (another poll, another replica): still nothing
    assert watcher(s3, cluster, base_config, owner="w2").poll_once() == []
    assert new_runs(kfp, before) == []


def test_the_same_file_seen_twice_starts_one_run(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    key = f"{PREFIX}daily.yaml"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"pipeline: inference\nparams: {mode: daily}\n")
    obj = next(watcher(s3, cluster, base_config).pending())

    # two replicas that listed the prefix at the same moment, handling the same listing concurrently
    replicas = [watcher(s3, cluster, base_config, owner=f"replica-{i}") for i in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def handle(w: TriggerWatcher) -> None:
        barrier.wait()
        outcomes.append(w.handle(obj).outcome)

    threads = [threading.Thread(target=handle, args=(w,)) for w in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(new_runs(kfp, before)) == 1
    assert sorted(outcomes) in (["skipped", "started"], ["already-started", "started"])

    # a restarted watcher that still has the old listing: the claim says started, nothing new
    again = watcher(s3, cluster, base_config, owner="restarted").handle(obj)
    assert again.outcome == "already-started"
    assert len(new_runs(kfp, before)) == 1


def test_a_watcher_that_died_mid_way_is_taken_over_without_a_second_run(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    key = f"{PREFIX}weekly.yaml"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"pipeline: training\nparams: {week: 2}\n")
    now = [1_000_000.0]
    dying = watcher(s3, cluster, base_config, owner="dying", clock=lambda: now[0])
    obj = next(dying.pending())

    # it claimed and started the run, then died before recording it
    owned, _ = dying._claim(obj)
    assert owned
    request = parse_trigger(read(s3, key).encode(), key, base_config)
    cluster.submit(request.pipeline, request.params, request.config, dying.run_name(obj, request))
    assert len(new_runs(kfp, before)) == 1

    successor = watcher(s3, cluster, base_config, owner="successor", clock=lambda: now[0])
    assert successor.handle(obj).outcome == "skipped"  # the lease is still running
    now[0] += successor.lease_s + 1
    result = successor.handle(obj)
    assert result.outcome == "started"
    assert len(new_runs(kfp, before)) == 1  # found the run by its name instead of starting another
    claim = json.loads(read(s3, f"{PREFIX}_claims/{obj.claim_id}.json"))
    assert claim["owner"] == "successor" and claim["took_over_from"] == "dying"


def test_uploading_the_file_again_is_a_new_trigger() -> None:
    t0 = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)
    first = TriggerObject(f"{PREFIX}a.yaml", "etag1", t0)
    assert first.claim_id == TriggerObject(f"{PREFIX}a.yaml", "etag1", t0).claim_id
    assert first.claim_id != TriggerObject(f"{PREFIX}a.yaml", "etag1", t0 + dt.timedelta(seconds=1)).claim_id


def test_the_lambda_handler_uses_the_same_claims(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    key = f"{PREFIX}monthly run.yaml"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"pipeline: inference\nparams: {mode: monthly}\n")

    def event(k: str) -> dict[str, Any]:
        encoded = k.replace(" ", "+")  # S3 event keys are URL-encoded
        record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": {"key": encoded}}}
        return {"Records": [record]}

    w = watcher(s3, cluster, base_config, owner="lambda")
    first = lambda_handler(event(key), None, watcher=w)
    assert first["results"][0]["outcome"] == "started"
    # S3 delivers events at least once; and our own writes under the prefix must not trigger anything
    assert lambda_handler(event(key), None, watcher=w)["results"][0]["outcome"] == "gone"
    claim = next(k for k in keys(s3) if k.startswith(f"{PREFIX}_claims/"))
    assert lambda_handler(event(claim), None, watcher=w) == {"results": []}
    assert len(new_runs(kfp, before)) == 1
    (run,) = new_runs(kfp, before)
    assert run["arguments"]["mode"] == "monthly"


def test_moto_honours_conditional_writes(s3: Any, cluster: Cluster, base_config: PackwiseConfig) -> None:
    assert watcher(s3, cluster, base_config).conditional_writes_honoured()


def test_watcher_needs_a_bucket() -> None:
    from packwise.errors import ConfigError
    from packwise.trigger import watcher_for

    with pytest.raises(ConfigError, match=r"cluster\.trigger\.bucket is not set"):
        watcher_for(PackwiseConfig(), starter=None)


def test_trigger_file_example_in_the_docs_is_valid(base_config: PackwiseConfig) -> None:
    doc = (Path(__file__).parents[2] / "src/packwise/trigger.py").read_text().split('"""')[1]
    example = "\n".join(line[4:] for line in doc.splitlines() if line.startswith("    "))
    request = parse_trigger(example.encode(), "doc.yaml", base_config)
    assert request.pipeline == "training" and request.params["week"] == 5
    assert request.config.model.type == "xgboost_text"
