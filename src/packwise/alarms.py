"""The CloudWatch alarms on the metrics the `cloudwatch` notifier sends, applied idempotently.

Alarms (names start with the metric namespace, e.g. `Packwise-`):

- `<ns>-training-rejection`: a training run rejected at least one candidate (Rejections >= 1).
- `<ns>-<pipeline>-failed-run`: a training or inference run failed (RunFailed >= 1).
- `<ns>-<pipeline>-missed-schedule`: no Heartbeat for `notify.schedule_period_s`; missing data is breaching,
  so a schedule that stopped firing raises it (the metric simply never arrives).

`apply_alarms` lists the existing alarms, compares each with the wanted definition and calls
`put_metric_alarm` only for those missing or different, reporting created / updated / unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from packwise.config import NotifyConfig
from packwise.errors import PackwiseError

_DAY = 86_400
_EVENT_PERIOD = 300  # rejection and failure datapoints arrive once per run: look at 5-minute windows

# The put_metric_alarm keys Packwise sets; describe_alarms returns them under the same names.
_COMPARED = (
    "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions", "MetricName", "Namespace", "Statistic",
    "Dimensions", "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator",
    "TreatMissingData",
)  # fmt: skip


@dataclass(frozen=True)
class AlarmChange:
    """What `apply_alarms` did to one alarm: created, updated or unchanged."""

    name: str
    action: str
    description: str


def wanted_alarms(config: NotifyConfig) -> list[dict[str, Any]]:
    """The put_metric_alarm arguments of every Packwise alarm for this configuration."""
    ns = config.cloudwatch_namespace
    actions = [config.alarm_topic_arn] if config.alarm_topic_arn else []
    # CloudWatch periods of a day or more must be whole days; longer gaps span several periods
    period = config.schedule_period_s if config.schedule_period_s < _DAY else _DAY
    if period < _DAY:
        period = max(60, 60 * math.ceil(period / 60))
    periods = max(1, math.ceil(config.schedule_period_s / period))

    def alarm(name: str, description: str, metric: str, pipeline: str, **kw: Any) -> dict[str, Any]:
        spec = {
            "AlarmName": f"{ns}-{name}",
            "AlarmDescription": description,
            "ActionsEnabled": True,
            "AlarmActions": actions,
            "OKActions": [],
            "MetricName": metric,
            "Namespace": ns,
            "Statistic": "Maximum",
            "Dimensions": [{"Name": "Pipeline", "Value": pipeline}],
            "Period": _EVENT_PERIOD,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
        }
        spec.update(kw)
        return spec

    alarms = [
        alarm(
            "training-rejection",
            "Packwise: a training run rejected a candidate model (see the run's SNS message for the reason).",
            "Rejections",
            "training",
        )
    ]
    for pipeline in ("training", "inference"):
        alarms.append(
            alarm(
                f"{pipeline}-failed-run",
                f"Packwise: a {pipeline} run failed or a package type in it failed.",
                "RunFailed",
                pipeline,
            )
        )
        alarms.append(
            alarm(
                f"{pipeline}-missed-schedule",
                f"Packwise: no {pipeline} run reported for {config.schedule_period_s} s (a missed schedule).",
                "Heartbeat",
                pipeline,
                Statistic="SampleCount",
                Period=period,
                EvaluationPeriods=periods,
                DatapointsToAlarm=periods,
                ComparisonOperator="LessThanThreshold",
                TreatMissingData="breaching",
            )
        )
    return alarms


def _normalized(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: spec.get(k) for k in _COMPARED}
    out["Dimensions"] = sorted((d["Name"], d["Value"]) for d in spec.get("Dimensions") or [])
    out["AlarmActions"] = sorted(spec.get("AlarmActions") or [])
    out["OKActions"] = sorted(spec.get("OKActions") or [])
    out["Threshold"] = float(spec.get("Threshold") or 0)
    out["DatapointsToAlarm"] = spec.get("DatapointsToAlarm") or spec.get("EvaluationPeriods")
    return out


def apply_alarms(config: NotifyConfig, client: Any | None = None) -> list[AlarmChange]:
    """Creates or updates the Packwise alarms so they match `config`; alarms already right are left alone.

    Raises:
        PackwiseError: CloudWatch refused (one line, with the permission to grant).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from packwise.notify.aws import aws_client, aws_error

    cloudwatch = client if client is not None else aws_client(config, "cloudwatch")
    wanted = wanted_alarms(config)
    try:
        existing: dict[str, dict[str, Any]] = {}
        paginator = cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNamePrefix=f"{config.cloudwatch_namespace}-", AlarmTypes=["MetricAlarm"]):
            existing.update({a["AlarmName"]: a for a in page.get("MetricAlarms", [])})
        changes = []
        for spec in wanted:
            name = spec["AlarmName"]
            have = existing.get(name)
            if have is not None and _normalized(have) == _normalized(spec):
                changes.append(AlarmChange(name, "unchanged", spec["AlarmDescription"]))
                continue
            cloudwatch.put_metric_alarm(**spec)
            changes.append(AlarmChange(name, "created" if have is None else "updated", spec["AlarmDescription"]))
    except (ClientError, BotoCoreError) as err:
        raise PackwiseError(
            aws_error(
                "cloudwatch alarms", err, "grant cloudwatch:DescribeAlarms and cloudwatch:PutMetricAlarm to this role"
            )
        ) from None
    return changes
