"""Packwise's storage: a local folder on a laptop, an object store (``s3://bucket/prefix``, or MinIO) anywhere else.

One abstraction, `pyarrow.fs`: pyarrow is already a dependency, reads and writes parquet natively and speaks
S3 itself (no s3fs/aiobotocore pins fighting boto3's). Everything that touches ``storage.root`` goes through
this module:

- small objects (run records) are read and written as bytes: `read_bytes`, `write_bytes`, `list_objects`;
- step code keeps working on local paths through `TaskStorage`: a task stages in what it reads (downloaded
  to a task-private temporary directory that mirrors the root's layout) and stages out what it wrote
  (uploaded, the completion marker last, so a reader never sees half of a content-addressed directory; if
  the marker is already there the upload is skipped: the same fingerprint is the same content). For a local
  root nothing is copied: the mirror is the root itself, so the embedded laptop run is unchanged.

The object store's endpoint comes from the standard AWS SDK settings (``AWS_ENDPOINT_URL_S3``, else
``AWS_ENDPOINT_URL``: MinIO, moto), the region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, credentials
from the standard chain only (env, profile, IRSA web identity, instance role): never from the config.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from packwise.errors import ConfigError, first_line

if TYPE_CHECKING:
    import pyarrow.fs as pafs

S3_SCHEME = "s3://"
_CHUNK = 1 << 20
_FIX = (
    "check the bucket exists, the task's AWS credentials may s3:GetObject/PutObject/ListBucket/DeleteObject on it "
    "and AWS_ENDPOINT_URL_S3 (MinIO, a test server) is right"
)


class StorageError(ConfigError):
    """storage.root cannot be reached, read or written (missing bucket, access denied, endpoint down)."""


def is_object_store(location: str | Path) -> bool:
    """Whether `location` is an ``s3://`` URI (else a local path)."""
    return isinstance(location, str) and location.startswith(S3_SCHEME)


def check_s3_uri(value: str, key: str = "storage.root") -> str:
    """`value` normalised (no trailing slash) when it is ``s3://bucket[/prefix]``; else a ConfigError."""
    parts = urlsplit(value)
    bucket = parts.netloc
    if parts.scheme != "s3" or not bucket or parts.query or parts.fragment or "@" in bucket or ":" in bucket:
        raise ConfigError(f"{key} {value!r} is not an s3://bucket/prefix URI; write it as s3://bucket/prefix")
    prefix = parts.path.strip("/")
    if any(part in {"", ".", ".."} for part in prefix.split("/")) and prefix:
        raise ConfigError(f"{key} {value!r} has an empty, '.' or '..' path segment; write it as s3://bucket/prefix")
    return f"{S3_SCHEME}{bucket}/{prefix}" if prefix else f"{S3_SCHEME}{bucket}"


def storage_path(location: str) -> str | Path:
    """A component's storage parameter as the steps take it: an ``s3://`` URI as it is, else a local Path."""
    return location if is_object_store(location) else Path(location)


def join(location: str | Path, *parts: str) -> str:
    """`location` / parts, as a string: an ``s3://`` URI or a local path."""
    if is_object_store(location):
        base = str(location).rstrip("/")
        return "/".join([base, *(p.strip("/") for p in parts if p)])
    return str(Path(location, *parts))


def parent(location: str | Path) -> str | Path:
    """The directory holding `location` (a URI's prefix, or a local path's parent)."""
    if is_object_store(location):
        return str(location).rstrip("/").rsplit("/", 1)[0]
    return Path(location).parent


def s3_endpoint() -> str | None:
    """The S3 endpoint URL of the standard AWS SDK settings (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_filesystem() -> pafs.S3FileSystem:
    """A `pyarrow.fs.S3FileSystem` on the standard AWS settings (endpoint, region, credential chain)."""
    import pyarrow.fs as pafs

    kwargs: dict[str, object] = {
        "connect_timeout": 10,
        "request_timeout": 60,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    endpoint = s3_endpoint()
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme or "https"
    return pafs.S3FileSystem(**kwargs)


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding `location` and the path inside it (``bucket/key`` for S3)."""
    import pyarrow.fs as pafs

    if is_object_store(location):
        return s3_filesystem(), str(location)[len(S3_SCHEME) :].rstrip("/")
    return pafs.LocalFileSystem(), str(Path(location).absolute())


def storage_error(err: BaseException, root: str | Path, key: str = "storage.root") -> StorageError:
    """One line naming `key`, what the object store said and the fix."""
    text = first_line(err)
    if "NO_SUCH_BUCKET" in text or "does not exist" in text:
        reason = "the bucket does not exist"
    elif "ACCESS_DENIED" in text or "AccessDenied" in text or "Forbidden" in text or "403" in text:
        reason = "access denied"
    elif "NETWORK_CONNECTION" in text or "connect" in text.lower() or "resolve" in text.lower():
        reason = f"the endpoint {s3_endpoint() or 'of AWS S3'} is unreachable"
    else:
        reason = text
    return StorageError(f"{key} {root}: {reason} ({text[:200]}); {_FIX}")


def check_storage_root(root: str | Path, key: str = "storage.root", write: bool = True) -> None:
    """Checks an ``s3://`` root before a task or run writes anything: the bucket exists and, with `write`,
    a small probe object can be written and deleted.

    Raises:
        StorageError: The bucket is missing, access is denied or the endpoint is unreachable (one line).
    """
    import pyarrow.fs as pafs

    fs, path = filesystem(root)
    bucket = path.split("/", 1)[0]
    try:
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise StorageError(f"{key} {root}: the bucket {bucket!r} does not exist; create it or fix {key}")
        if write:
            probe = f"{path}/.write-check-{uuid.uuid4().hex}"
            with fs.open_output_stream(probe, compression=None) as out:
                out.write(b"")
            fs.delete_file(probe)
        else:
            fs.get_file_info(path)
    except OSError as err:
        raise storage_error(err, root, key) from None


def exists(uri: str | Path) -> bool:
    """Whether the file (or object) `uri` exists."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    try:
        return bool(fs.get_file_info(path).type == pafs.FileType.File)
    except OSError as err:
        raise storage_error(err, uri, "storage") from None


def read_bytes(uri: str | Path) -> bytes | None:
    """The bytes of the file `uri`, or None when there is none."""
    if not is_object_store(uri):
        path = Path(uri)
        return path.read_bytes() if path.exists() else None
    fs, path_in = filesystem(uri)
    try:
        with fs.open_input_stream(path_in, compression=None) as stream:
            return bytes(stream.read())
    except FileNotFoundError:
        return None
    except OSError as err:
        raise storage_error(err, uri, "storage") from None


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Writes (or replaces) the file `uri` whole: a reader sees the old or the new bytes, never a part.

    Local: a temporary sibling renamed into place. S3: one PUT (objects appear whole).
    """
    if not is_object_store(uri):
        from packwise.files import atomic_write

        with atomic_write(Path(uri)) as tmp:
            tmp.write_bytes(data)
        return
    fs, path = filesystem(uri)
    try:
        with fs.open_output_stream(path, compression=None) as out:
            out.write(data)
    except OSError as err:
        raise storage_error(err, uri, "storage") from None


def delete(uri: str | Path) -> None:
    """Removes the file `uri`; nothing when it is absent."""
    if not is_object_store(uri):
        Path(uri).unlink(missing_ok=True)
        return
    _remove(uri, lambda fs, path: fs.delete_file(path))


def delete_tree(uri: str | Path) -> None:
    """Removes the directory `uri` and everything under it; nothing when it is absent."""
    if not is_object_store(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    _remove(uri, lambda fs, path: fs.delete_dir(path))


def _remove(uri: str | Path, action: Callable[[pafs.FileSystem, str], None]) -> None:
    fs, path = filesystem(uri)
    try:
        action(fs, path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise storage_error(err, uri, "storage") from None


@dataclass(frozen=True)
class StoredObject:
    """One file under a prefix: its URI (or local path) and modification time (seconds since the epoch)."""

    uri: str
    mtime: float


def list_objects(prefix: str | Path, suffix: str = "") -> list[StoredObject]:
    """The files directly under the directory `prefix` whose names end with `suffix` (none when absent)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(prefix)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    except OSError as err:
        raise storage_error(err, prefix, "storage") from None
    out = []
    for info in infos:
        if info.type == pafs.FileType.File and info.base_name.endswith(suffix):
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            out.append(StoredObject(join(prefix, info.base_name), mtime))
    return out


def _files_under(fs: pafs.FileSystem, path: str) -> list[str]:
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [path]
    selected = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    return sorted(i.path for i in selected if i.type == pafs.FileType.File)


def _copy(src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str) -> None:
    with (
        src_fs.open_input_stream(src, compression=None) as reader,
        dst_fs.open_output_stream(dst, compression=None) as writer,
    ):
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)


class TaskStorage:
    """A task's view of ``storage.root``: local paths to work on, staged in and out for an object store.

    `local_root` mirrors the root's layout: the root itself when it is local (nothing is ever copied), a
    task-private temporary directory when it is ``s3://`` (see `task_storage`). `local(uri)` and `uri(path)`
    translate between the two.
    """

    def __init__(self, root: str | Path, local_root: Path) -> None:
        self.root = root
        self.local_root = local_root
        self.remote = is_object_store(root)
        self._staged: dict[str, Path] = {}

    def uri(self, local: Path | str) -> str:
        """The storage URI (or local path) of a path under `local_root`."""
        if not self.remote:
            return str(local)
        relative = Path(local).relative_to(self.local_root)
        return join(self.root, *relative.parts)

    def local(self, uri: str | Path) -> Path:
        """Where `uri` (a URI under the root, or a local path) lives in this task's mirror."""
        if not self.remote or not is_object_store(uri):
            return Path(uri)
        base = str(self.root).rstrip("/") + "/"
        text = str(uri)
        if text.rstrip("/") == base.rstrip("/"):
            return self.local_root
        if not text.startswith(base):
            bucket_key = text[len(S3_SCHEME) :]
            return self.local_root.parent / "elsewhere" / bucket_key
        return self.local_root.joinpath(*text[len(base) :].strip("/").split("/"))

    def stage_in(self, uri: str | Path, marker: str | None = None) -> Path:
        """Downloads the file or directory `uri` into the mirror (once per task); returns its local path.

        With `marker` (a directory's completion file), a directory without it is treated as absent: the
        local path is returned empty and the caller's own "missing" check fires.
        """
        local = self.local(uri)
        if not self.remote or not is_object_store(uri) or str(uri) in self._staged:
            return local
        self._staged[str(uri)] = local
        fs, path = filesystem(uri)
        try:
            if marker is not None and not fs.get_file_info(f"{path}/{marker}").is_file:
                return local
            files = _files_under(fs, path)
            for src in files:
                relative = src[len(path) :].lstrip("/")
                dst = local / relative if relative else local
                dst.parent.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.part")
                import pyarrow.fs as pafs

                _copy(fs, src, pafs.LocalFileSystem(), str(tmp))
                os.replace(tmp, dst)
        except OSError as err:
            raise storage_error(err, uri, "storage.root") from None
        return local

    def stage_out(self, local: Path, marker: str | None = None) -> str:
        """Uploads the file or directory `local` (under `local_root`) to its URI; returns the URI.

        A directory's `marker` file is uploaded last, and when the marker is already stored nothing is
        uploaded: a content-addressed directory with its marker is complete and holds the same bytes.
        """
        uri = self.uri(local)
        if not self.remote:
            return uri
        import pyarrow.fs as pafs

        fs, path = filesystem(uri)
        try:
            if local.is_file():
                _copy(pafs.LocalFileSystem(), str(local), fs, path)
                return uri
            if marker is not None and fs.get_file_info(f"{path}/{marker}").is_file:
                return uri
            files = sorted(p for p in local.rglob("*") if p.is_file())
            last = [p for p in files if marker is not None and p == local / marker]
            for file in [p for p in files if p not in last] + last:
                key = "/".join([path, *file.relative_to(local).parts])
                _copy(pafs.LocalFileSystem(), str(file), fs, key)
        except OSError as err:
            raise storage_error(err, uri, "storage.root") from None
        return uri


@contextmanager
def task_storage(root: str | Path, write: bool = True) -> Iterator[TaskStorage]:
    """The task's `TaskStorage`; for an ``s3://`` root, checks the bucket first (a write probe with `write`)
    and removes the task's temporary mirror at the end."""
    if not is_object_store(root):
        yield TaskStorage(root, Path(root))
        return
    check_storage_root(root, write=write)
    scratch = Path(tempfile.mkdtemp(prefix="packwise-task-"))
    try:
        (scratch / "root").mkdir()
        yield TaskStorage(root, scratch / "root")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
