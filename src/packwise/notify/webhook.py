"""`webhook`: POSTs the summary as JSON (Slack/Teams-compatible `text` field plus the full payload)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from packwise.errors import PackwiseError


class WebhookNotifier:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        data = json.dumps({"text": f"*{subject}*\n{body_markdown}", "packwise": payload}, default=str).encode()
        request = urllib.request.Request(
            self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                if response.status >= 300:
                    raise PackwiseError(f"notify webhook answered HTTP {response.status}; check notify.webhook_url")
        except OSError as err:
            raise PackwiseError(f"notify webhook {self.url} failed: {err}; check notify.webhook_url") from None
