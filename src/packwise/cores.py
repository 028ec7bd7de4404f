"""How many threads a task may use, on any OS.

`os.sched_getaffinity` (the cores this process may run on, which honours `taskset` and container cpusets)
exists only on Linux; elsewhere (a data scientist's Mac) `os.cpu_count()` is the answer.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


def task_threads() -> int:
    """Threads this task may use: OMP_NUM_THREADS when its runner set it (the local runner gives each of
    its concurrent tasks a share of the cores), else every available core."""
    try:
        given = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        given = 0
    return given if given > 0 else available_cores()
