"""Identities that tie a run's tasks together without breaking the task cache.

A candidate is identified by what it was trained from (data fingerprint, package type, and the config
sections that shape it), not by the run that trained it: a resumed or repeated run finds the version it
already registered instead of registering a twin. The run record, written by the extract (which runs
every time) and read by the exit handler, maps a run id to its data fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from packwise.files import atomic_write


def candidate_key(fingerprint: str, package_type: str, features_json: str, split_json: str, model_json: str) -> str:
    """A stable identity of a candidate model: same inputs, same key."""
    h = hashlib.sha256()
    for part in (fingerprint, package_type, features_json, split_json, model_json):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _runs_dir(storage_root: Path) -> Path:
    return storage_root / "runs"


def write_run_record(storage_root: Path, run_id: str, record: dict[str, Any]) -> Path:
    """Atomically writes (or replaces) the record of `run_id`."""
    path = _runs_dir(storage_root) / f"{run_id}.json"
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return path


def read_run_record(storage_root: Path, run_id: str) -> dict[str, Any] | None:
    path = _runs_dir(storage_root) / f"{run_id}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def effective_run_id(run_id: str, job_id: str) -> str:
    """The caller's run id when given (the CLI sets one), else the orchestrator's job id."""
    return run_id.strip() or job_id
