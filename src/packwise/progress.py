"""Task progress markers: one machine-readable line when a task starts, advances, succeeds or fails.

Tasks run in other processes (or containers), possibly two at a time; the line carries the task and its
package type, so the local runner can show "train (mailer) 3.1s" and, on failure, the one-line error,
without parsing KFP's executor dumps. On a cluster the same lines are simply part of the task log.

Inside a running task, `advance` reports how far it got ("state": "progress" with done, total and the
unit: rows scored of the shard's rows, boosting rounds, shards cut) and `phase` names the step it is in
(the load's staging, checking, inserting, pruning). kfp.local streams a task's stdout line by line, so
these reach the local runner while the task runs; they are throttled to one line per `INTERVAL` seconds
per task, except the first and the last (done == total), which always go out. Outside `task_report`
(tests, benchmarks, the library used directly) both are no-ops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from packwise.errors import first_line

MARKER = "::packwise-task::"
# Seconds between two progress lines of one task (the first and the last always go out).
INTERVAL = 0.5


@dataclass
class _Running:
    base: dict[str, Any]
    last_emit: dict[str, float] = field(default_factory=dict)  # per unit: when its last line went out


_current: ContextVar[_Running | None] = ContextVar("packwise_task", default=None)


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
    token = _current.set(_Running(base))
    start = time.perf_counter()
    try:
        yield
    except BaseException as err:
        _current.reset(token)
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
    _current.reset(token)
    emit({**base, "state": "succeeded", "seconds": round(time.perf_counter() - start, 3)})


def advance(done: int, total: int | None, unit: str) -> None:
    """Reports that the running task has done `done` of `total` `unit` (None: total unknown).

    Throttled per task and unit to one line per `INTERVAL` seconds; the first line and the last
    (done >= total) always go out. Does nothing outside `task_report`.
    """
    running = _current.get()
    if running is None:
        return
    now = time.monotonic()
    last = running.last_emit.get(unit)
    final = total is not None and done >= total
    if last is not None and not final and now - last < INTERVAL:
        return
    running.last_emit[unit] = now
    emit({**running.base, "state": "progress", "done": int(done), "total": total, "unit": unit})


def phase(name: str) -> None:
    """Reports the step the running task is now in (e.g. "inserting"). Does nothing outside `task_report`."""
    running = _current.get()
    if running is not None:
        emit({**running.base, "state": "progress", "phase": name})
