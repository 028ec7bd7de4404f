"""`packwise gc`: prunes the state that grows with every run, by one documented rule.

Candidates are the directories each run adds:

- ``snapshots/<fingerprint>/`` under ``storage.root`` (a training extract, content-addressed),
- ``inference/extracts/<...>/`` under ``storage.root`` (an inference extract with its shards),
- ``kfp/<pipeline run>/`` under the local workspace (kfp.local's outputs of one pipeline run: splits, models,
  scored shards; ``storage.root`` itself, or ``storage.local_dir`` with an ``s3://`` root).

``storage.root`` may be a local directory or an ``s3://`` URI (its "directories" are key prefixes, listed
and deleted through the same pyarrow S3 filesystem the tasks use). Of each kind the newest `keep` complete
ones (by modification time; on S3 the newest object's) stay. Beside those, a directory stays when:

- it is a snapshot whose fingerprint a registered model version names (``data_fingerprint``): the gate's
  label-quality check and replays read the champion's snapshot;
- a kfp.local cache entry (``storage.cache_root/*.json``, the outputs of a cached task) names a path inside
  it, or a path it lies inside: a cache hit hands those paths to the next task, so they must still exist;
- it is a task's work in progress: locally a dot-directory (renamed when complete); on S3 a directory whose
  manifest (uploaded last) is not there yet and whose newest object is less than a day old (older, it is
  an abandoned upload: deleted, and never one of the newest).

Everything else is deleted; ``dry_run`` only lists it. On S3 the manifest goes first, so a deletion cut
short leaves a directory every reader already treats as absent (they look for the manifest). The kfp cache,
the logs, the run records, the warehouse and the registry are never touched.

A cluster's KFP cache is not visible from here, and it is safe without being seen: the tasks that make
these directories (the training and inference extracts) never come from the cache, and neither does
shard-products, so a run after a gc writes again whatever it needs; what a cached task hands on otherwise
lives under KFP's own pipeline root (``cluster.pipeline_root``), which gc does not touch.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packwise.errors import ConfigError

KINDS = ("snapshot", "extract", "kfp-run")
# An object-store directory without its manifest younger than this is an upload in progress.
UPLOAD_GRACE_S = 86_400.0


@dataclass(frozen=True)
class Candidate:
    """One prunable directory (a local path, or an ``s3://`` URI) and why it stays, if it does."""

    kind: str
    path: Path | str
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


@dataclass(frozen=True)
class _Dir:
    path: Path | str
    mtime: float
    bytes: int
    complete: bool  # an object-store directory has its manifest (a local one is complete once renamed)


def _size(path: Path) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(base) / name).lstat().st_size
            except OSError:
                continue
    return total


def _local_dirs(parent: Path) -> list[_Dir]:
    if not parent.is_dir():
        return []
    # a dot-directory is a task's work in progress (written beside, renamed when complete): never a candidate
    found = [p for p in parent.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    return [_Dir(p, p.stat().st_mtime, _size(p), True) for p in found]


def _object_dirs(parent: str, manifest: str) -> list[_Dir]:
    """The directories (key prefixes) directly under the ``s3://`` URI `parent`, from one recursive listing."""
    import pyarrow.fs as pafs

    from packwise.storage import filesystem, join, storage_error

    fs, path = filesystem(parent)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    except OSError as err:
        raise storage_error(err, parent) from None
    groups: dict[str, list[tuple[str, pafs.FileInfo]]] = {}
    for info in infos:
        top, _, rest = info.path[len(path) + 1 :].partition("/")
        if info.type == pafs.FileType.File and rest and not top.startswith("."):
            groups.setdefault(top, []).append((rest, info))
    out = []
    for name, files in sorted(groups.items()):
        mtime = max((i.mtime.timestamp() for _, i in files if i.mtime is not None), default=0.0)
        complete = any(rest == manifest for rest, _ in files)
        size = sum(i.size or 0 for _, i in files)
        out.append(_Dir(join(parent, name), mtime, size, complete))
    return out


def _dirs(parent: Path | str, kind: str) -> list[_Dir]:
    from packwise.storage import is_object_store

    return _object_dirs(str(parent), _manifest(kind)) if is_object_store(parent) else _local_dirs(Path(parent))


def _manifest(kind: str) -> str:
    """The file a directory of `kind` is published with, last (`packwise.files.publish_directory`)."""
    import packwise.inference.shards as extracts
    import packwise.snapshot as snapshots

    return snapshots.MANIFEST_FILE if kind == "snapshot" else extracts.MANIFEST_FILE


def _normalized(location: Path | str) -> str:
    from packwise.storage import is_object_store

    return str(location).rstrip("/") if is_object_store(location) else os.path.normpath(location)


def cached_paths(cache_root: Path, roots: Sequence[Path | str]) -> set[str]:
    """Every path (or ``s3://`` URI) under one of `roots` that a kfp.local cache entry names (its outputs'
    URIs and values)."""
    found: set[str] = set()
    if not cache_root.is_dir():
        return found
    prefixes = [re.compile(re.escape(_normalized(r)) + r"(?:/[^\s\"'\\,}\]]*)?") for r in roots]
    for entry in cache_root.glob("*.json"):
        try:
            text = entry.read_text(errors="replace")
        except OSError:
            continue
        for prefix in prefixes:
            for match in prefix.finditer(text):
                found.add(_normalized(match.group(0)))
    return found


def _related(candidate: str, referenced: Iterable[str]) -> bool:
    return any(p == candidate or p.startswith(candidate + "/") or candidate.startswith(p + "/") for p in referenced)


def _child(location: Path | str, *parts: str) -> Path | str:
    from packwise.storage import join

    return join(location, *parts) if isinstance(location, str) else Path(location, *parts)


def plan_gc(
    storage_root: Path | str,
    cache_root: Path,
    registered_fingerprints: Iterable[str],
    keep: int,
    pipeline_root: Path | None = None,
) -> list[Candidate]:
    """Every candidate directory with the reason it stays (None when it is deleted); see the module rule.

    Args:
        storage_root: ``storage.root``: a local directory or an ``s3://`` URI.
        cache_root: ``storage.cache_root``, kfp.local's cache (always local).
        registered_fingerprints: The ``data_fingerprint`` of every registered model version.
        keep: The newest directories of each kind kept whatever else holds.
        pipeline_root: kfp.local's outputs (``storage.pipeline_root``); default ``storage_root/kfp`` for a
            local root, none for an object store.

    Raises:
        ConfigError: `keep` is negative.
        StorageError: The object store cannot be listed.
    """
    if keep < 0:
        raise ConfigError(f"gc: --keep is {keep}; use 0 or more (the newest directories of each kind kept)")
    root = storage_root if isinstance(storage_root, str) else Path(os.path.normpath(storage_root))
    if pipeline_root is None and isinstance(root, Path):
        pipeline_root = root / "kfp"
    fingerprints = set(registered_fingerprints)
    roots = [root] if pipeline_root is None else [root, pipeline_root]
    top = {_normalized(r) for r in roots}
    referenced = {p for p in cached_paths(cache_root, roots) if p not in top}
    now = time.time()
    groups: Sequence[tuple[str, list[_Dir]]] = (
        ("snapshot", _dirs(_child(root, "snapshots"), "snapshot")),
        ("extract", _dirs(_child(root, "inference", "extracts"), "extract")),
        ("kfp-run", [] if pipeline_root is None else _dirs(pipeline_root, "kfp-run")),
    )
    out: list[Candidate] = []
    for kind, dirs in groups:
        newest = sorted(dirs, key=lambda d: (d.mtime, str(d.path)), reverse=True)
        # the newest `keep` complete ones: an upload in progress (or abandoned) is not one of them
        ranks = {id(d): rank for rank, d in enumerate(d for d in newest if d.complete)}
        for d in newest:
            rank = ranks.get(id(d), keep)
            reason: str | None = None
            name = str(d.path).rstrip("/").rsplit("/", 1)[-1]
            if kind == "snapshot" and name in fingerprints:
                reason = "a registered version was trained on it"
            elif _related(_normalized(d.path), referenced):
                reason = "a cached task's outputs name it"
            elif not d.complete and now - d.mtime < UPLOAD_GRACE_S:
                reason = "an upload in progress (no manifest yet)"
            elif rank < keep:
                reason = f"among the newest {keep}"
            out.append(Candidate(kind, d.path, d.bytes, reason))
    return out


def _delete(candidate: Candidate) -> None:
    """Removes a directory; on an object store its manifest first (see the module docstring)."""
    from packwise.storage import delete, delete_tree, join

    if isinstance(candidate.path, str):
        delete(join(candidate.path, _manifest(candidate.kind)))
    delete_tree(candidate.path)


def collect_garbage(
    storage_root: Path | str,
    cache_root: Path,
    registered_fingerprints: Iterable[str],
    keep: int,
    dry_run: bool,
    pipeline_root: Path | None = None,
) -> GcResult:
    """Deletes the candidates `plan_gc` does not keep (lists them only when `dry_run`)."""
    plan = plan_gc(storage_root, cache_root, registered_fingerprints, keep, pipeline_root)
    result = GcResult(dry_run=dry_run, candidates=plan)
    if not dry_run:
        for candidate in result.deleted:
            _delete(candidate)
    return result
