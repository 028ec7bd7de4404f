"""Trigger files against moto's S3 server on 127.0.0.1: one run per file, invalid files moved aside.

The watcher starts runs through the real `packwise_app.cluster.Cluster` (it compiles the pipelines) on a
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

from packwise.config import PackwiseConfig, parse_config
from packwise_app.cluster import Cluster
from packwise_app.trigger import TriggerObject, TriggerWatcher, lambda_handler, parse_trigger
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
    # the rest is the cluster's config, except that a trigger's run cannot promote on its own
    gate = json.loads(run["arguments"]["gate_json"])
    assert gate == {**json.loads(base_config.section_json("gate")), "auto_approve": False}
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
        ("week.yaml", "pipeline: training\nparams: {week: -1}\n", "week: Input should be greater than or equal to 0"),
        ("nopipe.json", '{"params": {"week": 3}}', "pipeline: Field required"),
        ("model.yaml", "pipeline: training\nparams: {week: 1}\nconfig: {model: {type: gbm}}\n", "unknown model type"),
        ("key.yaml", "pipeline: training\nparams: {week: 1}\nconfig: {modle: {}}\n", "config.modle cannot be set"),
        ("sa.yaml", "pipeline: training\nparams: {week: 1}\nconfig: {cluster: {service_account: admin}}\n",
         "config.cluster cannot be set by a trigger file"),
        ("sql.yaml", "pipeline: inference\nconfig: {inference: {inventory_query: DROP TABLE x}}\n",
         "config.inference cannot be set by a trigger file"),
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
    from packwise_app.trigger import watcher_for

    with pytest.raises(ConfigError, match=r"cluster\.trigger\.bucket is not set"):
        watcher_for(PackwiseConfig(), starter=None)


def test_trigger_file_example_in_the_docs_is_valid(base_config: PackwiseConfig) -> None:
    doc = (Path(__file__).parents[2] / "app/trigger_file.py").read_text().split('"""')[1]
    example = "\n".join(line[4:] for line in doc.splitlines() if line.startswith("    "))
    request = parse_trigger(example.encode(), "doc.yaml", base_config)
    assert request.pipeline == "training" and request.params["week"] == 5
    assert request.config.model.type == "xgboost_text"


# ---- trust: what a trigger file may never do, and inputs that must not knock the watcher out -----------


@pytest.mark.parametrize(
    ("name", "config", "forbidden"),
    [
        # every gate criterion off: once replaced all four champions with AUC 0.59-0.68 models
        ("gate-off.yaml", {"gate": {"min_auc": {"review": None, "reject": None}}}, "config.gate"),
        # a threshold of 0.001 once flipped every current recommendation
        ("threshold.yaml", {"package_types": [{"name": "own_container", "threshold": 0.001}]}, "config.package_types"),
        ("features.yaml", {"features": {"max_categories": 1000000000}}, "config.features"),
        ("split.yaml", {"split": {"train_ratio": 0.99}}, "config.split"),
        ("inference.yaml", {"inference": {"shard_target_rows": 1}}, "config.inference"),
        ("registry.yaml", {"registry": {"tracking_uri": "http://evil.example"}}, "config.registry"),
    ],
)
def test_a_trigger_file_cannot_touch_what_decides_what_reaches_production(
    s3: Any,
    cluster: Cluster,
    kfp: RecordingKfpClient,
    base_config: PackwiseConfig,
    name: str,
    config: dict[str, Any],
    forbidden: str,
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    body = json.dumps({"pipeline": "training", "params": {"week": 2}, "config": config}).encode()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{name}", Body=body)
    (result,) = watcher(s3, cluster, base_config).poll_once()
    assert result.outcome == "rejected"
    assert f"{forbidden} cannot be set by a trigger file (only config.model" in (result.reason or "")
    assert new_runs(kfp, before) == []
    assert f"{PREFIX}_rejected/{name}.reason.txt" in keys(s3)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ({"num_boost_round": 5_000}, "num_boost_round 5000 is above the trigger bound 2000"),
        ({"text_hash_features": 1 << 20}, "text_hash_features 1048576 is above the trigger bound 65536"),
        ({"params": {"nthread": 64}}, "config.model.params.nthread cannot be set by a trigger file"),
        ({"params": {"eta": 5}}, "config.model.params.eta must be a number in [0.001, 1]"),
        ({"params": {"max_depth": "deep"}}, "config.model.params.max_depth must be a number in [1, 12]"),
    ],
)
def test_model_choices_stay_within_the_operators_bounds(base_config: PackwiseConfig, model: dict, reason: str) -> None:
    from packwise_app.trigger import TriggerError

    body = json.dumps({"pipeline": "training", "params": {"week": 2}, "config": {"model": model}}).encode()
    with pytest.raises(TriggerError) as err:
        parse_trigger(body, "t.json", base_config)
    assert reason in str(err.value)


def test_allowed_model_choices_pass_and_the_operator_may_narrow_the_types(base_config: PackwiseConfig) -> None:
    from packwise_app.trigger import TriggerError

    model = {"type": "xgboost_text", "num_boost_round": 300, "params": {"eta": 0.05, "max_depth": 4}}
    body = json.dumps({"pipeline": "training", "params": {"week": 2}, "config": {"model": model}}).encode()
    request = parse_trigger(body, "t.json", base_config)
    assert request.config.model.num_boost_round == 300 and request.config.model.params["eta"] == 0.05
    narrow = base_config.model_copy(
        update={
            "cluster": base_config.cluster.model_copy(
                update={"trigger": base_config.cluster.trigger.model_copy(update={"model_types": ["xgboost"]})}
            )
        }
    )
    with pytest.raises(TriggerError, match="'xgboost_text' is not allowed for triggers"):
        parse_trigger(body, "t.json", narrow)


def test_a_trigger_started_run_registers_at_most_pending_approval_unless_the_operator_allows(
    base_config: PackwiseConfig,
) -> None:
    from packwise.gate import Evidence, evaluate_gate

    request = parse_trigger(b"pipeline: training\nparams: {week: 2}\n", "t.yaml", base_config)
    assert request.config.gate.auto_approve is False
    # a candidate that passes every criterion waits for a person
    good = Evidence(
        package_type="bag", version=None, auc=0.95, pr_auc=0.9, log_loss=0.2, label_count=10_000, positive_rate=0.3
    )
    decision = evaluate_gate(good, None, request.config.gate)
    assert decision.outcome == "review" and decision.status == "PendingManualApproval"
    assert "gate.auto_approve is off" in decision.reason
    assert evaluate_gate(good, None, base_config.gate).status != "PendingManualApproval"
    trusted = parse_config(
        {**base_config.model_dump(mode="json"), "cluster": {"trigger": {"bucket": BUCKET, "allow_auto_approve": True}}}
    )
    assert parse_trigger(b"pipeline: training\nparams: {week: 2}\n", "t.yaml", trusted).config.gate.auto_approve


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        # 40 KB of 20,000 nested lists once raised an uncaught RecursionError on every poll
        ("deep.yaml", ("[" * 20_000 + "]" * 20_000).encode(), "nested deeper than 20 levels"),
        ("deep-block.yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(40)).encode(), "nested deeper than 20"),
        ("bomb.yaml", b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "anchors and aliases"),
        ("empty.yaml", b"", "expected a mapping"),
        ("binary.yaml", b"\xff\xfe\x00garbage", "not valid YAML or JSON"),
    ],
)
def test_input_that_crashed_the_parser_is_moved_aside_and_the_lambda_survives_it(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig, name: str, body: bytes, reason: str
) -> None:
    before = len(kfp.named("create_run_from_pipeline_package"))
    key = f"{PREFIX}{name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    event = {"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}]}
    (result,) = lambda_handler(event, watcher=watcher(s3, cluster, base_config))["results"]
    assert result["outcome"] == "rejected" and reason in result["reason"]
    assert key not in keys(s3) and f"{PREFIX}_rejected/{name}.reason.txt" in keys(s3)
    assert new_runs(kfp, before) == []


class _CountingS3:
    """A boto3 client that records which keys were read."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.read: list[str] = []

    def get_object(self, **kw: Any) -> Any:
        self.read.append(kw["Key"])
        return self.client.get_object(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_an_oversized_file_is_refused_before_it_is_read(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig
) -> None:
    from packwise_app.trigger import MAX_TRIGGER_BYTES

    before = len(kfp.named("create_run_from_pipeline_package"))
    key = f"{PREFIX}huge.yaml"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"pipeline: training\n# " + b"x" * (MAX_TRIGGER_BYTES * 2))
    counting = _CountingS3(s3)
    (result,) = watcher(counting, cluster, base_config).poll_once()
    assert result.outcome == "rejected"
    assert f"{MAX_TRIGGER_BYTES * 2 + 21} bytes; a trigger file is at most {MAX_TRIGGER_BYTES}" in (result.reason or "")
    assert key not in counting.read  # decided on the listed size
    assert new_runs(kfp, before) == []


def test_an_unexpected_parse_failure_moves_the_file_aside_instead_of_failing_every_poll(
    s3: Any, cluster: Cluster, kfp: RecordingKfpClient, base_config: PackwiseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import packwise_app.trigger as trigger_module

    def broken(body: bytes, key: str, base: PackwiseConfig) -> Any:
        raise ValueError("simulated")

    monkeypatch.setattr(trigger_module, "parse_trigger", broken)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}odd.yaml", Body=VALID.encode())
    (result,) = watcher(s3, cluster, base_config).poll_once()
    assert result.outcome == "rejected" and "could not be read (ValueError)" in (result.reason or "")
    assert f"{PREFIX}_rejected/odd.yaml" in keys(s3)
