"""`log`: the summary goes to the task log (the KFP UI shows it)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("packwise.notify")


class LogNotifier:
    def send(self, subject: str, body_markdown: str, payload: dict[str, Any]) -> None:
        logger.info("%s\n%s", subject, body_markdown)
        print(f"{subject}\n{body_markdown}", flush=True)
