"""Fault injection for resume drills: make one task fail on purpose, then run again and watch it resume.

Set PACKWISE_FAIL_TASK to `<task>` or `<task>/<package_type>` (comma-separated for several), e.g.
`PACKWISE_FAIL_TASK=evaluate/mailer`. Read when a task runs, never at import.
"""

from __future__ import annotations

import os

from packwise.errors import InjectedFault


def maybe_fail(task: str, package_type: str | None = None) -> None:
    """Raises InjectedFault when the environment asks this task (for this package type) to fail."""
    wanted = {w.strip() for w in os.environ.get("PACKWISE_FAIL_TASK", "").split(",") if w.strip()}
    here = {task} if package_type is None else {task, f"{task}/{package_type}"}
    hit = wanted & here
    if hit:
        raise InjectedFault(f"{sorted(hit)[0]}: failing on purpose (PACKWISE_FAIL_TASK); unset it and run again")
