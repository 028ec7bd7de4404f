"""`cloudwatch`: metrics per run and package type, for dashboards and the alarms of `packwise alarms apply`.

Per package type (dimensions Pipeline, PackageType), training runs: Promoted, Rejected, Pending, Failed
(1 or 0, from the type's decision), CandidateAUC, AUCChange (candidate minus champion on the same split);
inference runs: Recommended (products given the type).
Per run (dimension Pipeline): Heartbeat (1 per run: the missed-schedule alarm watches it), RunFailed,
Failures (failed types plus a failed pipeline), Rejections, LabelCount, PredictionsLoaded (inference).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from packwise.config import NotifyConfig
from packwise.errors import PackwiseError
from packwise.notify.aws import aws_client, aws_error
from packwise.notify.sns import failures

_DECISIONS = {"Approved": "Promoted", "Rejected": "Rejected", "PendingManualApproval": "Pending", "failed": "Failed"}
_BATCH = 500  # put_metric_data takes at most 1000 datums; stay well under the 1 MB request limit


def _datum(name: str, value: float, dims: dict[str, str], unit: str, at: datetime) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        "Value": float(value),
        "Unit": unit,
        "Timestamp": at,
    }


def run_metrics(payload: dict[str, Any], at: datetime | None = None) -> list[dict[str, Any]]:
    """The metric data of one run summary (training or inference), ready for put_metric_data."""
    at = at or datetime.now(UTC)
    pipeline = str(payload.get("pipeline") or "training")
    run_dims = {"Pipeline": pipeline}
    failed = failures(payload)
    pipeline_failed = bool(payload.get("error")) or str(payload.get("pipeline_state", "")).upper() == "FAILED"
    data = [
        _datum("Heartbeat", 1, run_dims, "Count", at),
        _datum("RunFailed", 1 if pipeline_failed or failed else 0, run_dims, "Count", at),
        _datum("Failures", len(failed) or (1 if pipeline_failed else 0), run_dims, "Count", at),
    ]
    rows = payload.get("package_types") or []
    if pipeline == "inference":
        loaded = int(payload.get("n_products") or 0) if payload.get("loaded") else 0
        data.append(_datum("PredictionsLoaded", loaded, run_dims, "Count", at))
        for row in rows:
            dims = {**run_dims, "PackageType": str(row["package_type"])}
            data.append(_datum("Recommended", int(row.get("count") or 0), dims, "Count", at))
        return data
    rejections = 0
    for row in rows:
        dims = {**run_dims, "PackageType": str(row["package_type"])}
        decision = _DECISIONS.get(str(row.get("decision")), "Failed")
        rejections += decision == "Rejected"
        for name in ("Promoted", "Rejected", "Pending", "Failed"):
            data.append(_datum(name, 1 if decision == name else 0, dims, "Count", at))
        auc = (row.get("candidate") or {}).get("auc")
        champion = (row.get("champion_scores") or {}).get("auc")
        if auc is not None:
            data.append(_datum("CandidateAUC", auc, dims, "None", at))
            if champion is not None:
                data.append(_datum("AUCChange", auc - champion, dims, "None", at))
    data.append(_datum("Rejections", rejections, run_dims, "Count", at))
    if payload.get("n_labels") is not None:  # label rows of the run's snapshot, every type together
        data.append(_datum("LabelCount", int(payload["n_labels"]), run_dims, "Count", at))
    return data


class CloudWatchNotifier:
    """Puts the run's metrics into `notify.cloudwatch_namespace`; the message text is not sent."""

    def __init__(self, config: NotifyConfig, client: Any | None = None) -> None:
        self.namespace = config.cloudwatch_namespace
        self._client = client if client is not None else aws_client(config, "cloudwatch")

    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        """Puts the metrics of `payload`; raises a one-line PackwiseError when CloudWatch refuses them."""
        from botocore.exceptions import BotoCoreError, ClientError

        data = run_metrics(payload)
        try:
            for start in range(0, len(data), _BATCH):
                self._client.put_metric_data(Namespace=self.namespace, MetricData=data[start : start + _BATCH])
        except (ClientError, BotoCoreError) as err:
            raise PackwiseError(
                aws_error("cloudwatch", err, "grant cloudwatch:PutMetricData to the role running Packwise")
            ) from None
