"""Where run summaries go. A `Notifier` backend per module; `notify.backends` (or `notify.backend`) picks
one or several, and every run's summary goes to each of them."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from packwise.config import NotifyConfig
from packwise.errors import PackwiseError

logger = logging.getLogger("packwise.notify")


class Notifier(Protocol):
    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        """Delivers one message; raises on a delivery failure the operator must see."""
        ...


class FanOut:
    """Sends to every notifier, even when one fails; then raises one error naming each failure."""

    def __init__(self, notifiers: list[tuple[str, Notifier]]) -> None:
        self.notifiers = notifiers

    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        errors: list[str] = []
        for name, notifier in self.notifiers:
            try:
                notifier.send(subject, body_markdown, payload)
            except Exception as err:  # one notifier down must not silence the others
                logger.error("notifier %s failed: %s", name, err)
                errors.append(str(err))
        if errors:
            raise PackwiseError("; ".join(errors) if len(errors) > 1 else errors[0])


def open_one(config: NotifyConfig, backend: str) -> Notifier:
    """The notifier of one backend name."""
    if backend == "webhook":
        from packwise.notify.webhook import WebhookNotifier

        return WebhookNotifier.from_config(config)
    if backend == "sns":
        from packwise.notify.sns import SnsNotifier

        return SnsNotifier(config)
    if backend == "cloudwatch":
        from packwise.notify.cloudwatch import CloudWatchNotifier

        return CloudWatchNotifier(config)
    from packwise.notify.log import LogNotifier

    return LogNotifier()


def open_notifier(config: NotifyConfig) -> Notifier:
    """The configured notifier; several (`notify.backends`) are sent to in order, each even if one fails."""
    active = config.active
    if len(active) == 1:
        return open_one(config, active[0])
    return FanOut([(name, open_one(config, name)) for name in active])
