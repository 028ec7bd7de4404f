"""The sns and cloudwatch notifiers, several at once, and `packwise alarms apply`, against moto's server:
the SNS message as a subscribed SQS queue receives it, the CloudWatch metrics and the alarms as stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from packwise.alarms import apply_alarms
from packwise.config import NotifyConfig
from packwise.errors import PackwiseError
from packwise.inference import inference_summary_markdown
from packwise.notify import FanOut, open_notifier
from packwise.run_summary import summary_markdown
from tests.sagemaker_emulator import REGION

TRAINING = {
    "run_id": "run-42",
    "week": 3,
    "fingerprint": "f" * 64,
    "n_labels": 1234,
    "pipeline_state": "SUCCEEDED",
    "error": "",
    "package_types": [
        {"package_type": "bag", "decision": "Approved", "version": 2, "reason": "beats the champion",
         "candidate": {"auc": 0.91}, "champion_scores": {"auc": 0.88}},
        {"package_type": "mailer", "decision": "Rejected", "version": 3, "reason": "AUC below the champion",
         "candidate": {"auc": 0.80}, "champion_scores": {"auc": 0.85}},
        {"package_type": "box", "decision": "failed", "version": None,
         "reason": "no candidate registered: its training, evaluation or gate task failed"},
    ],
}  # fmt: skip

INFERENCE = {
    "run_id": "inf-9", "pipeline": "inference", "mode": "daily", "pipeline_state": "SUCCEEDED", "error": "",
    "loaded": True, "already_loaded": False, "n_products": 500, "models": {"bag": 2, "box": 1},
    "package_types": [
        {"package_type": "bag", "count": 300, "share": 0.6, "previous_share": None, "change": None},
        {"package_type": "box", "count": 200, "share": 0.4, "previous_share": None, "change": None},
    ],
}  # fmt: skip


@pytest.fixture
def aws(emulator: Any) -> dict[str, Any]:
    """A topic with an SQS queue subscribed to it, on moto's server emptied first (its CloudWatch queries do not
    tell namespaces apart)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{emulator.endpoint_url}/moto-api/reset", method="POST")).close()
    sns, sqs = emulator.client("sns"), emulator.client("sqs")
    topic = sns.create_topic(Name="packwise-runs")["TopicArn"]
    queue = sqs.create_queue(QueueName="packwise-runs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {"endpoint": emulator.endpoint_url, "topic": topic, "queue": queue, "emulator": emulator}


def _config(aws: dict[str, Any], namespace: str, **kw: Any) -> NotifyConfig:
    return NotifyConfig(
        backends=kw.pop("backends", ["log", "sns", "cloudwatch"]), sns_topic_arn=kw.pop("topic", aws["topic"]),
        cloudwatch_namespace=namespace, aws_region=REGION, aws_endpoint_url=aws["endpoint"], **kw,
    )  # fmt: skip


def _received(aws: dict[str, Any]) -> list[dict[str, Any]]:
    sqs = aws["emulator"].client("sqs")
    out = []
    while messages := sqs.receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"])
    return out


def _metric(aws: dict[str, Any], namespace: str, name: str, **dims: str) -> list[float]:
    cloudwatch = aws["emulator"].client("cloudwatch")
    now = datetime.now(UTC)
    found = cloudwatch.get_metric_data(
        MetricDataQueries=[{
            "Id": "m",
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": name,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                "Period": 60, "Stat": "Sum",
            },
        }],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
    )  # fmt: skip
    return [float(v) for v in found["MetricDataResults"][0]["Values"]]


def test_one_sns_message_per_run_holds_every_decision_the_failures_and_links(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(aws, "PackwiseT1", links={"KFP run": "https://kfp.example/#/runs/details/{run_id}"})
    subject, body = summary_markdown(TRAINING)
    open_notifier(cfg).send(subject, body, TRAINING)
    messages = _received(aws)
    assert len(messages) == 1
    message = messages[0]
    assert message["Subject"] == subject  # short enough to pass unchanged
    text = message["Message"]
    for row in TRAINING["package_types"]:
        assert f"| {row['package_type']} | {row['decision']} |" in text
    assert "Failures:\n- box: no candidate registered" in text
    assert "- KFP run: https://kfp.example/#/runs/details/run-42" in text
    assert message["MessageAttributes"]["state"]["Value"] == "failed"
    assert message["MessageAttributes"]["pipeline"]["Value"] == "training"
    assert subject in capsys.readouterr().out  # the log notifier ran too


def test_cloudwatch_gets_decision_auc_change_labels_and_failures_per_type_and_run(aws: dict[str, Any]) -> None:
    ns = "PackwiseT2"
    cfg = _config(aws, ns, backends=["cloudwatch"])
    open_notifier(cfg).send(*summary_markdown(TRAINING), TRAINING)
    t = {"Pipeline": "training"}
    assert _metric(aws, ns, "Promoted", **t, PackageType="bag") == [1.0]
    assert _metric(aws, ns, "Rejected", **t, PackageType="bag") == [0.0]
    assert _metric(aws, ns, "Rejected", **t, PackageType="mailer") == [1.0]
    assert _metric(aws, ns, "Failed", **t, PackageType="box") == [1.0]
    assert _metric(aws, ns, "CandidateAUC", **t, PackageType="bag") == pytest.approx([0.91])
    assert _metric(aws, ns, "AUCChange", **t, PackageType="mailer") == pytest.approx([-0.05])
    assert _metric(aws, ns, "CandidateAUC", **t, PackageType="box") == []  # nothing to report for a failed type
    assert _metric(aws, ns, "LabelCount", **t) == [1234.0]
    assert _metric(aws, ns, "Rejections", **t) == [1.0]
    assert _metric(aws, ns, "Failures", **t) == [1.0]
    assert _metric(aws, ns, "RunFailed", **t) == [1.0]
    assert _metric(aws, ns, "Heartbeat", **t) == [1.0]

    open_notifier(cfg).send(*inference_summary_markdown(INFERENCE), INFERENCE)
    i = {"Pipeline": "inference"}
    assert _metric(aws, ns, "PredictionsLoaded", **i) == [500.0]
    assert _metric(aws, ns, "Recommended", **i, PackageType="bag") == [300.0]
    assert _metric(aws, ns, "RunFailed", **i) == [0.0]
    names = {m["MetricName"] for m in aws["emulator"].client("cloudwatch").list_metrics(Namespace=ns)["Metrics"]}
    assert {"Heartbeat", "PredictionsLoaded", "AUCChange", "CandidateAUC", "LabelCount"} <= names


def test_a_failing_notifier_does_not_silence_the_others(aws: dict[str, Any]) -> None:
    ns = "PackwiseT3"
    missing = aws["topic"].rsplit(":", 1)[0] + ":no-such-topic"
    notifier = open_notifier(_config(aws, ns, topic=missing, backends=["sns", "cloudwatch"]))
    assert isinstance(notifier, FanOut)
    with pytest.raises(PackwiseError) as info:
        notifier.send(*inference_summary_markdown(INFERENCE), INFERENCE)
    message = str(info.value)
    assert message.startswith("notify sns: NotFound") and "check notify.sns_topic_arn" in message
    assert "\n" not in message
    assert _metric(aws, ns, "Heartbeat", Pipeline="inference") == [1.0]  # cloudwatch still got the run


def test_notify_config_keeps_backend_and_refuses_both_or_a_missing_topic() -> None:
    assert NotifyConfig(backend="webhook", webhook_url_env="HOOK").active == ["webhook"]
    assert NotifyConfig(backends=["log", "log", "cloudwatch"]).active == ["log", "cloudwatch"]
    with pytest.raises(ValueError, match=r"set notify\.backends or notify\.backend, not both"):
        NotifyConfig(backend="log", backends=["sns"], sns_topic_arn="arn:aws:sns:us-east-1:123456789012:t")
    with pytest.raises(ValueError, match=r"notify\.sns_topic_arn is required"):
        NotifyConfig(backends=["log", "sns"])


def _alarms(aws: dict[str, Any], ns: str) -> dict[str, dict[str, Any]]:
    found = aws["emulator"].client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{ns}-")["MetricAlarms"]
    return {a["AlarmName"]: a for a in found}


def test_alarms_apply_creates_then_leaves_unchanged_then_updates(aws: dict[str, Any]) -> None:
    ns = "PackwiseA1"
    cfg = _config(aws, ns, alarm_topic_arn=aws["topic"], schedule_period_s=86_400)
    first = apply_alarms(cfg)
    assert [(c.name, c.action) for c in first] == [
        (f"{ns}-training-rejection", "created"),
        (f"{ns}-training-failed-run", "created"),
        (f"{ns}-training-missed-schedule", "created"),
        (f"{ns}-inference-failed-run", "created"),
        (f"{ns}-inference-missed-schedule", "created"),
    ]
    stored = _alarms(aws, ns)
    missed = stored[f"{ns}-inference-missed-schedule"]
    assert missed["MetricName"] == "Heartbeat" and missed["TreatMissingData"] == "breaching"
    assert missed["ComparisonOperator"] == "LessThanThreshold" and missed["Period"] == 86_400
    assert missed["AlarmActions"] == [aws["topic"]]
    rejection = stored[f"{ns}-training-rejection"]
    assert rejection["MetricName"] == "Rejections" and rejection["TreatMissingData"] == "notBreaching"
    assert rejection["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and rejection["Threshold"] == 1.0

    assert {c.action for c in apply_alarms(cfg)} == {"unchanged"}

    weekly = _config(aws, ns, alarm_topic_arn=aws["topic"], schedule_period_s=7 * 86_400)
    changed = {c.name: c.action for c in apply_alarms(weekly)}
    assert changed == {
        f"{ns}-training-rejection": "unchanged", f"{ns}-training-failed-run": "unchanged",
        f"{ns}-inference-failed-run": "unchanged",
        f"{ns}-training-missed-schedule": "updated", f"{ns}-inference-missed-schedule": "updated",
    }  # fmt: skip
    assert _alarms(aws, ns)[f"{ns}-training-missed-schedule"]["EvaluationPeriods"] == 7


def test_alarms_apply_command_prints_what_it_did(aws: dict[str, Any], tmp_path: Path) -> None:
    from packwise_app.cli import app

    ns = "PackwiseA2"
    path = tmp_path / "packwise.yaml"
    path.write_text(
        yaml.safe_dump(
            {"notify": {"backend": "cloudwatch", "cloudwatch_namespace": ns, "aws_region": REGION,
                        "aws_endpoint_url": aws["endpoint"]}}
        )
    )  # fmt: skip
    result = CliRunner().invoke(app, ["alarms", "apply", "-c", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"{ns}-training-rejection" in result.output and "created" in result.output
    again = CliRunner().invoke(app, ["alarms", "apply", "-c", str(path)], env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "created" not in again.output and again.output.count("unchanged") == 5


def test_several_notifiers_round_trip_through_the_pipeline_parameter(tmp_path: Any) -> None:
    """notify_json is the whole section dumped (backend included); the task validates it again.

    Before: the dump carried backend "log" beside backends, and every notify task failed with "set
    notify.backends or notify.backend, not both".
    """
    from tests.conftest import make_config

    topic = "arn:aws:sns:us-east-1:123456789012:t"
    cfg = make_config(tmp_path, notify={"backends": ["sns", "cloudwatch"], "sns_topic_arn": topic})
    again = NotifyConfig.model_validate_json(cfg.section_json("notify"))
    assert again == cfg.notify
    assert again.active == ["sns", "cloudwatch"] and again.backend == "sns"
