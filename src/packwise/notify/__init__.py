"""Where run summaries go. A `Notifier` backend per module, chosen by `notify.backend`."""

from __future__ import annotations

from typing import Any, Protocol

from packwise.config import NotifyConfig


class Notifier(Protocol):
    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        """Delivers one message; raises on a delivery failure the operator must see."""
        ...


def open_notifier(config: NotifyConfig) -> Notifier:
    """The notifier of `config.backend`; ConfigError when the webhook URL is missing or not http(s)."""
    if config.backend == "webhook":
        from packwise.notify.webhook import WebhookNotifier

        return WebhookNotifier.from_config(config)
    from packwise.notify.log import LogNotifier

    return LogNotifier()
