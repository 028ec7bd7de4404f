"""How many threads a task may use, on any OS.

`os.sched_getaffinity` (the cores this process may run on, which honours `taskset` and container cpusets)
exists only on Linux; elsewhere (a data scientist's Mac) `os.cpu_count()` is the answer.
"""

from __future__ import annotations

import os

# Set by the local runner beside OMP_NUM_THREADS: the cores its concurrent tasks share (see `shard_threads`).
LOCAL_CORES_ENV = "PACKWISE_LOCAL_CORES"


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


def shard_threads(n_shards: int, parallelism: int) -> int:
    """Threads a scoring task may use when its run scores `n_shards` shards, `parallelism` at once.

    The local runner gives every task half the cores (kfp.local runs two at once) and says how many it
    shares (``PACKWISE_LOCAL_CORES``). While shards score nothing else runs in the inference DAG, so a
    run with fewer shards than it scores at once leaves cores idle: its shards take the shared cores
    between them (a 5M-product month in one shard scored on one core of two). Elsewhere (a cluster's
    pod, a caller's own OMP_NUM_THREADS) a task keeps `task_threads`.
    """
    base = task_threads()
    try:
        shared = int(os.environ.get(LOCAL_CORES_ENV, "0"))
    except ValueError:
        shared = 0
    if shared <= 0 or n_shards <= 0:
        return base
    return max(base, shared // max(1, min(n_shards, parallelism)))
