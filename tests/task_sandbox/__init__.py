"""The task sandbox of the production rehearsal (see ``sitecustomize.py`` here for what it enforces)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

SANDBOX_DIR = Path(__file__).parent
VIOLATIONS_ENV = "PACKWISE_SANDBOX_VIOLATIONS"
ALLOW_ENV = "PACKWISE_SANDBOX_ALLOW"


@dataclass(frozen=True)
class Sandbox:
    violations_log: Path

    def violations(self) -> list[str]:
        """The paths tasks were refused, in order (pid stripped)."""
        if not self.violations_log.exists():
            return []
        return [line.split("\t", 1)[1] for line in self.violations_log.read_text().splitlines() if "\t" in line]


def enable_task_sandbox(monkeypatch: pytest.MonkeyPatch, violations_log: Path, allow: list[Path]) -> Sandbox:
    """Every Python process started from now on (kfp.local's subprocess tasks) runs sandboxed.

    Set it after starting servers: they would inherit it too. ``allow`` is what a task may write besides
    its private directory and /dev (kfp.local's pipeline root: a task's own outputs).
    """
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SANDBOX_DIR), *([pythonpath] if pythonpath else [])]))
    monkeypatch.setenv(VIOLATIONS_ENV, str(violations_log))
    monkeypatch.setenv(ALLOW_ENV, os.pathsep.join(str(p) for p in allow))
    return Sandbox(violations_log)
