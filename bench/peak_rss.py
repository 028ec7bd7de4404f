"""Peak resident memory of the calling process: the benchmarks' per-process memory figures."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak RSS of this process since its exec, in MiB: VmHWM of ``/proc/self/status``.

    Not ``ru_maxrss``: Linux keeps it across exec, so a child started after its parent peaked reports the
    parent's peak as its own (bench_scoring's children showed 987 MB, their parent's, after it had drawn 5M
    products). ``ru_maxrss`` only where /proc is not there.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
