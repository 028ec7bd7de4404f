"""`sns`: one message per run to an SNS topic: every type's decision, the failures, links."""

from __future__ import annotations

from typing import Any

from packwise.config import NotifyConfig
from packwise.errors import PackwiseError
from packwise.notify.aws import aws_client, aws_error

# SNS limits: Subject is at most 100 printable ASCII characters on one line; a message at most 256 KiB.
_SUBJECT_MAX = 100
_MESSAGE_MAX = 256 * 1024 - 1024


def sns_subject(subject: str) -> str:
    """The subject as SNS accepts it: one line of printable ASCII, at most 100 characters."""
    text = " ".join(subject.split())
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return text if len(text) <= _SUBJECT_MAX else text[: _SUBJECT_MAX - 3] + "..."


def failures(payload: dict[str, Any]) -> list[str]:
    """The run's failures, one line each: the pipeline error and every package type that failed."""
    out = [f"pipeline: {payload['error']}"] if payload.get("error") else []
    for row in payload.get("package_types") or []:
        if row.get("decision") == "failed":
            out.append(f"{row.get('package_type')}: {row.get('reason') or 'failed'}")
    return out


def sns_message(body_markdown: str, payload: dict[str, Any], links: dict[str, str]) -> str:
    """The message text: the summary body, the failures and the links (with the run id filled in)."""
    parts = [body_markdown.strip()]
    failed = failures(payload)
    if failed:
        parts.append("Failures:\n" + "\n".join(f"- {line}" for line in failed))
    if links:
        run_id = str(payload.get("run_id", ""))
        lines = [f"- {name}: {url.replace('{run_id}', run_id)}" for name, url in links.items()]
        parts.append("Links:\n" + "\n".join(lines))
    text = "\n\n".join(parts)
    encoded = text.encode()
    if len(encoded) > _MESSAGE_MAX:
        text = encoded[:_MESSAGE_MAX].decode(errors="ignore") + "\n... (cut: SNS messages hold 256 KiB)"
    return text


class SnsNotifier:
    """Publishes one message per run to `notify.sns_topic_arn`, with attributes to filter subscriptions on."""

    def __init__(self, config: NotifyConfig, client: Any | None = None) -> None:
        assert config.sns_topic_arn is not None  # the config model guarantees it
        self.topic_arn = config.sns_topic_arn
        self.links = dict(config.links)
        self._client = client if client is not None else aws_client(config, "sns")

    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        """Publishes the run's message; raises a one-line PackwiseError when SNS refuses it."""
        from botocore.exceptions import BotoCoreError, ClientError

        attributes = {
            "pipeline": {"DataType": "String", "StringValue": str(payload.get("pipeline") or "training")},
            "state": {"DataType": "String", "StringValue": "failed" if failures(payload) else "ok"},
        }
        try:
            self._client.publish(
                TopicArn=self.topic_arn,
                Subject=sns_subject(subject),
                Message=sns_message(body_markdown, payload, self.links),
                MessageAttributes=attributes,
            )
        except (ClientError, BotoCoreError) as err:
            raise PackwiseError(
                aws_error("sns", err, f"check notify.sns_topic_arn ({self.topic_arn}) and sns:Publish on it")
            ) from None
