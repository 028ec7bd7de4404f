"""Identities that tie a run's tasks together without breaking the task cache.

A candidate is identified by what it was trained from (data fingerprint, package type, and the config
sections that shape it), not by the run that trained it: a resumed or repeated run finds the version it
already registered instead of registering a twin. The run record, written by the extract (which runs
every time) and read by the exit handler, maps a run id to its data fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from packwise.errors import ConfigError, PackwiseError, first_line
from packwise.storage import delete, join, list_objects, read_bytes, storage_path, write_bytes

# What a run id may look like: it names files (run records, logs) under storage.root, so no `/`, no `..`,
# no leading dot or dash, at most 63 characters (a KFP job id, a UUID, matches).
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
# A run record's name: a run id plus a suffix such as `.summary` or `.models`.
_RECORD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str, source: str = "run id") -> str:
    """`run_id` when it matches RUN_ID_PATTERN; else a one-line ConfigError naming the pattern.

    Args:
        run_id: The candidate run id (from the CLI, a trigger file, a pipeline parameter).
        source: What supplied it, for the message (e.g. `--run-id`, `params.run_id`).

    Raises:
        ConfigError: The run id could escape storage.root or is not a plain name.
    """
    if _RUN_ID.fullmatch(run_id) and ".." not in run_id:
        return run_id
    shown = run_id if len(run_id) <= 80 else run_id[:77] + "..."
    raise ConfigError(
        f"{source} {shown!r} is not a valid run id; use 1-63 letters, digits, '.', '_' or '-', starting with a "
        f"letter or digit, without '..' (pattern {RUN_ID_PATTERN})"
    )


def candidate_key(fingerprint: str, package_type: str, features_json: str, split_json: str, model_json: str) -> str:
    """A stable identity of a candidate model: same inputs, same key."""
    h = hashlib.sha256()
    for part in (fingerprint, package_type, features_json, split_json, model_json):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _runs_dir(storage_root: str | Path) -> str:
    return join(storage_root, "runs")


def _record_path(storage_root: str | Path, name: str) -> str:
    """`storage_root/runs/<name>.json`, refusing any name that is not a plain file name."""
    if not _RECORD_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"run record {name[:80]!r} is not a plain name; run ids must match {RUN_ID_PATTERN}")
    return join(_runs_dir(storage_root), f"{name}.json")


def write_run_record(storage_root: str | Path, run_id: str, record: dict[str, Any]) -> str | Path:
    """Writes (or replaces) the record of `run_id` whole (see `packwise.storage.write_bytes`); returns where
    (a local Path, or the object's s3:// URI)."""
    path = _record_path(storage_root, run_id)
    write_bytes(path, json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    return storage_path(path)


def read_run_record(storage_root: str | Path, run_id: str) -> dict[str, Any] | None:
    """The record of `run_id`, or None when there is none."""
    path = _record_path(storage_root, run_id)
    try:
        data = read_bytes(path)
    except OSError as err:
        raise PackwiseError(f"run record {path} is corrupt ({first_line(err)}); delete it or re-run that run") from None
    if data is None:
        return None
    return _read_record(path, data)


def remove_run_record(storage_root: str | Path, name: str) -> None:
    """Deletes the record `name` (a run id plus its suffix); nothing when it is absent."""
    delete(_record_path(storage_root, name))


def _read_record(path: str, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PackwiseError(
            f"run record {path} is corrupt ({first_line(err)}); delete it or re-run that run"
        ) from None
    if not isinstance(data, dict):
        raise PackwiseError(f"run record {path} is corrupt (not a JSON object); delete it or re-run that run")
    return data


def recent_run_records(storage_root: str | Path, suffix: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` records named `<run id><suffix>.json` (e.g. `.summary`), newest first.

    Raises:
        PackwiseError: A record is not a JSON object (one line naming the file).
    """
    found = sorted(list_objects(_runs_dir(storage_root), f"{suffix}.json"), key=lambda o: o.mtime, reverse=True)
    records = []
    for item in found[:limit]:
        raw = read_bytes(item.uri)
        if raw is not None:  # deleted between the listing and the read
            records.append(_read_record(item.uri, raw))
    return records


def effective_run_id(run_id: str, job_id: str) -> str:
    """The caller's run id when given (the CLI sets one), else the orchestrator's job id; checked.

    Raises:
        ConfigError: The run id does not match RUN_ID_PATTERN (it could name a path outside storage.root).
    """
    return check_run_id(run_id.strip() or job_id, "run_id")
