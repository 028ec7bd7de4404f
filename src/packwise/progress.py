"""Task progress markers: one machine-readable line when a task starts, succeeds or fails.

Tasks run in other processes (or containers), possibly two at a time; the line carries the task and its
package type, so the local runner can show "train (mailer) 3.1s" and, on failure, the one-line error,
without parsing KFP's executor dumps. On a cluster the same lines are simply part of the task log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from packwise.errors import first_line

MARKER = "::packwise-task::"


def emit(event: dict[str, Any]) -> None:
    print(MARKER + json.dumps(event, sort_keys=True, default=str), flush=True)


def parse(line: str) -> dict[str, Any] | None:
    """The event in a log line, or None."""
    at = line.find(MARKER)
    if at < 0:
        return None
    try:
        event: dict[str, Any] = json.loads(line[at + len(MARKER) :])
    except json.JSONDecodeError:
        return None
    return event


@contextmanager
def task_report(task: str, package_type: str | None = None) -> Iterator[None]:
    """Brackets a task's work with running / succeeded / failed events."""
    base = {"task": task, "package_type": package_type}
    emit({**base, "state": "running"})
    start = time.perf_counter()
    try:
        yield
    except BaseException as err:
        emit(
            {
                **base,
                "state": "failed",
                "seconds": round(time.perf_counter() - start, 3),
                "error": first_line(err),
                "error_type": type(err).__name__,
            }
        )
        raise
    emit({**base, "state": "succeeded", "seconds": round(time.perf_counter() - start, 3)})
