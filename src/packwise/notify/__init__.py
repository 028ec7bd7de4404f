"""Where run summaries go. A `Notifier` backend per module, chosen by `notify.backend`."""

from __future__ import annotations

from typing import Any, Protocol

from packwise.config import NotifyConfig


class Notifier(Protocol):
    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        """Delivers one message; raises on a delivery failure the operator must see."""
        ...


def open_notifier(config: NotifyConfig) -> Notifier:
    if config.backend == "webhook":
        from packwise.notify.webhook import WebhookNotifier

        assert config.webhook_url is not None  # the config model guarantees it
        return WebhookNotifier(config.webhook_url, config.timeout_s)
    from packwise.notify.log import LogNotifier

    return LogNotifier()
