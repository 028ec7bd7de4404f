"""`packwise gc`: prunes the local state that grows with every run, by one documented rule.

Candidates are the directories each run adds under ``storage.root``:

- ``snapshots/<fingerprint>/`` (a training extract, content-addressed),
- ``inference/extracts/<...>/`` (an inference extract with its prepared products and shards),
- ``kfp/<pipeline run>/`` (kfp.local's outputs of one pipeline run: splits, models, scored shards).

Of each kind the newest `keep` (by modification time) stay. Beside those, a directory stays when:

- it is a snapshot whose fingerprint a registered model version names (``data_fingerprint``): the gate's
  label-quality check and replays read the champion's snapshot;
- a kfp.local cache entry (``storage.cache_root/*.json``, the outputs of a cached task) names a path inside
  it, or a path it lies inside: a cache hit hands those paths to the next task, so they must still exist.

A dot-directory (a running task's work in progress, renamed when complete) is never a candidate.
Everything else is deleted; ``dry_run`` only lists it. The kfp cache, the logs, the run records, the
warehouse and the registry are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packwise.errors import ConfigError

KINDS = ("snapshot", "extract", "kfp-run")


@dataclass(frozen=True)
class Candidate:
    """One prunable directory and why it stays, if it does."""

    kind: str
    path: Path
    bytes: int
    keep_reason: str | None  # None: it is deleted

    @property
    def kept(self) -> bool:
        return self.keep_reason is not None


@dataclass
class GcResult:
    """What `collect_garbage` found, kept and (unless a dry run) deleted."""

    dry_run: bool
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def deleted(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.kept]

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]

    @property
    def freed_bytes(self) -> int:
        return sum(c.bytes for c in self.deleted)


def _size(path: Path) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(base) / name).lstat().st_size
            except OSError:
                continue
    return total


def _dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    # a dot-directory is a task's work in progress (written beside, renamed when complete): never a candidate
    return [p for p in parent.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]


def cached_paths(cache_root: Path, storage_root: Path) -> set[Path]:
    """Every path under `storage_root` that a kfp.local cache entry names (its outputs' URIs and values)."""
    found: set[Path] = set()
    if not cache_root.is_dir():
        return found
    prefix = re.compile(re.escape(str(storage_root)) + r"(?:/[^\s\"'\\,}\]]*)?")
    for entry in cache_root.glob("*.json"):
        try:
            text = entry.read_text(errors="replace")
        except OSError:
            continue
        for match in prefix.finditer(text):
            found.add(Path(os.path.normpath(match.group(0))))
    return found


def _related(candidate: Path, referenced: Iterable[Path]) -> bool:
    return any(p == candidate or p.is_relative_to(candidate) or candidate.is_relative_to(p) for p in referenced)


def plan_gc(
    storage_root: Path, cache_root: Path, registered_fingerprints: Iterable[str], keep: int
) -> list[Candidate]:
    """Every candidate directory with the reason it stays (None when it is deleted); see the module rule.

    Raises:
        ConfigError: `keep` is negative.
    """
    if keep < 0:
        raise ConfigError(f"gc: --keep is {keep}; use 0 or more (the newest directories of each kind kept)")
    root = Path(os.path.normpath(storage_root))
    fingerprints = set(registered_fingerprints)
    referenced = {p for p in cached_paths(cache_root, root) if p != root}
    groups: Sequence[tuple[str, list[Path]]] = (
        ("snapshot", _dirs(root / "snapshots")),
        ("extract", _dirs(root / "inference" / "extracts")),
        ("kfp-run", _dirs(root / "kfp")),
    )
    out: list[Candidate] = []
    for kind, dirs in groups:
        newest = sorted(dirs, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
        for rank, path in enumerate(newest):
            reason: str | None = None
            if kind == "snapshot" and path.name in fingerprints:
                reason = "a registered version was trained on it"
            elif _related(path, referenced):
                reason = "a cached task's outputs name it"
            elif rank < keep:
                reason = f"among the newest {keep}"
            out.append(Candidate(kind, path, _size(path), reason))
    return out


def collect_garbage(
    storage_root: Path, cache_root: Path, registered_fingerprints: Iterable[str], keep: int, dry_run: bool
) -> GcResult:
    """Deletes the candidates `plan_gc` does not keep (lists them only when `dry_run`)."""
    result = GcResult(dry_run=dry_run, candidates=plan_gc(storage_root, cache_root, registered_fingerprints, keep))
    if not dry_run:
        for candidate in result.deleted:
            shutil.rmtree(candidate.path, ignore_errors=True)
    return result
