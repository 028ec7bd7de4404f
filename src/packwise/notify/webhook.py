"""`webhook`: POSTs the summary as JSON (Slack/Teams-compatible `text` field plus the full payload).

The URL is a secret (it carries the token), so it comes from the environment variable named by
`notify.webhook_url_env`, and every message about it shows only `scheme://host/…`. Only http and https
are spoken; a redirect is refused and reported (following one would send the summary to wherever the
Location points, as a GET without its body); connection errors, 429 and 5xx are retried with exponential
backoff by urllib3's Retry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.util.retry import Retry

from packwise.config import NotifyConfig
from packwise.errors import ConfigError, PackwiseError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def redacted(url: str) -> str:
    """`scheme://host[:port]/…`: enough to tell which webhook, never its path, query or userinfo (the token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme or '?'}://{host}{port}/…"


def webhook_url(config: NotifyConfig, environ: Mapping[str, str] | None = None) -> str:
    """The webhook URL from the environment variable `config.webhook_url_env`, checked.

    Args:
        config: The `notify` section (backend webhook).
        environ: Where to look (default: this process's environment).

    Raises:
        ConfigError: The variable is unset or empty, or holds anything but an absolute http(s) URL.
    """
    name = config.webhook_url_env
    if not name:
        raise ConfigError("notify.webhook_url_env is not set; name the env var that holds the webhook URL")
    url = (environ if environ is not None else os.environ).get(name, "").strip()
    if not url:
        raise ConfigError(
            f"notify.webhook_url_env: ${name} is not set in this environment; set it to the webhook URL "
            "(on a cluster: a key of cluster.secret listed in cluster.secret_keys)"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"notify.webhook_url_env: ${name} is not a valid URL; give an http(s) URL") from None
    if parts.scheme not in {"http", "https"} or not host:
        shown = f"a {parts.scheme}:// URL" if parts.scheme else "no URL scheme"
        raise ConfigError(f"notify.webhook_url_env: ${name} has {shown}; only http:// and https:// webhooks are sent")
    return url


class WebhookNotifier:
    """Sends one JSON POST per message to the webhook."""

    def __init__(self, url: str, timeout_s: float, retries: int = 3, backoff_s: float = 1.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = retries + 1
        self.retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"POST"}),  # the receiver either took the message or answered 5xx
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_s,
            backoff_max=60.0,
            raise_on_status=False,  # the last answer is reported below, with its status
            raise_on_redirect=False,
            respect_retry_after_header=True,
        )

    @classmethod
    def from_config(cls, config: NotifyConfig, environ: Mapping[str, str] | None = None) -> WebhookNotifier:
        """The notifier of `config` (URL from its env var); ConfigError when the URL is unusable."""
        return cls(webhook_url(config, environ), config.timeout_s, config.retries, config.retry_backoff_s)

    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        """POSTs the message; PackwiseError (naming only scheme://host/…) when it was not accepted.

        Raises:
            PackwiseError: A redirect, a 4xx, a 5xx after the retries, or no connection after the retries.
        """
        data = json.dumps({"text": f"*{subject}*\n{body_markdown}", "packwise": payload}, default=str).encode()
        where = redacted(self.url)
        with urllib3.PoolManager(timeout=urllib3.Timeout(total=self.timeout_s)) as http:
            try:
                response = http.request(
                    "POST",
                    self.url,
                    body=data,
                    headers={"Content-Type": "application/json"},
                    retries=self.retry,
                    redirect=False,
                )
            except urllib3.exceptions.HTTPError as err:
                # str(err) names the URL's path (the token): report the cause's type only
                reason = getattr(err, "reason", None) or err
                raise PackwiseError(
                    f"notify webhook {where} failed after {self.attempts} attempts "
                    f"({type(reason).__name__}); check the URL in the env var named by notify.webhook_url_env "
                    "and the network"
                ) from None
        status = response.status
        if 300 <= status < 400:
            target = redacted(response.headers.get("Location", "")) if response.headers.get("Location") else "?"
            raise PackwiseError(
                f"notify webhook {where} answered HTTP {status} (redirect to {target}), not followed: the message "
                "was not delivered; set the final URL in the env var named by notify.webhook_url_env"
            )
        if status in RETRY_STATUSES:
            raise PackwiseError(
                f"notify webhook {where} answered HTTP {status} after {self.attempts} attempts; the message "
                "was not delivered; check the receiving service"
            )
        if status >= 300:
            raise PackwiseError(
                f"notify webhook {where} answered HTTP {status}; the message was not delivered; check the URL and "
                "token in the env var named by notify.webhook_url_env"
            )
