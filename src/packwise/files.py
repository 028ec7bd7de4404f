"""Local files written safely and identified by content: one sha256, one atomic write, one publish.

A reader (another task, a retried task, a concurrent run) never sees a half-written file: everything is
written to a temporary sibling and renamed into place in one step, which POSIX makes atomic within a
file system.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 20


def check_writable_dir(path: Path | str, key: str) -> None:
    """Creates `path` if needed and checks a file can be written in it (then removes the probe).

    An ``s3://`` location is probed by writing and deleting a small object (`packwise.storage`).

    Raises:
        ConfigError: The directory cannot be created or written, naming `key`, the config key to fix.
    """
    from packwise.errors import ConfigError
    from packwise.storage import check_storage_root, is_object_store

    if is_object_store(path):
        check_storage_root(path, key)
        return
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{key} {path} is not writable ({reason}); set {key} to a directory you can write") from None


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yields a temporary sibling of `path` to write; when the block succeeds it replaces `path`.

    The parent directory is created. If the block raises, the temporary file is removed and `path` is
    left as it was (absent, or the previous version).

    Example:
        with atomic_write(out) as tmp:
            tmp.write_text(text)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish_directory(tmp: Path, final: Path, marker: str) -> None:
    """Renames the finished directory `tmp` to `final` in one step (content-addressed directories).

    When another writer of the same content won the race (`final/marker` exists), theirs is kept and
    `tmp` is left for the caller to remove; any other failure to rename is raised.
    """
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / marker).exists():
            raise
