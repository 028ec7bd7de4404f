"""Runs the pipelines on this machine with kfp.local, with a progress line per task instead of raw dumps.

kfp.local prints every task's executor input/output and streamed logs to stdout. Those go to a log file
under `storage.root/logs/`; the person at the terminal sees one line per task (started, done with its
time, cached, failed) unless `verbose` asks for everything. Caching is on: the snapshot directory is named
by the data fingerprint, so new data never hits a stale entry and the same data always does; a failed run
therefore resumes from the failed task when run again.
"""

import builtins
import contextlib
import io
import json
import logging
import re
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kfp import local

from packwise import progress
from packwise.config import PackwiseConfig
from packwise.lineage import check_run_id
from packwise_components.images import ImageSet, resolve_images

Runner = Literal["subprocess", "docker"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHE_HIT = re.compile(r"Task (\S+) cache hit \(key=([0-9a-f]+)\)")
_DEDUP_SUFFIX = re.compile(r"-\d+$")  # kfp names the second `register` task of a pipeline `register-2`
_PIPELINE_DONE = re.compile(r"Pipeline '([^']+)' finished with status (\w+)")


@dataclass
class TaskEvent:
    """A task's state change, or (state "progress") how far a running task got: `done` of `total` `unit`,
    or the `phase` it is in (see `packwise.progress`)."""

    task: str
    state: Literal["running", "progress", "succeeded", "failed", "cached"]
    seconds: float = 0.0
    package_type: str | None = None
    error: str | None = None
    done: int | None = None
    total: int | None = None
    unit: str | None = None
    phase: str | None = None

    @property
    def label(self) -> str:
        return f"{self.task} ({self.package_type})" if self.package_type else self.task


@dataclass
class ProgressLog:
    """Turns kfp.local's output into task events; keeps every raw line in a log file."""

    log_path: Path
    on_event: Callable[[TaskEvent], None]
    echo: bool = False
    cache_root: Path | None = None
    events: list[TaskEvent] = field(default_factory=list)
    kfp_failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _buffer: str = ""

    def __post_init__(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.log_path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._fh.close()

    def feed_line(self, raw: str) -> None:
        line = _ANSI.sub("", raw).rstrip()
        with self._lock:
            if self._fh.closed:  # a straggler after the run ended
                return
            self._fh.write(line + "\n")
            self._fh.flush()
            if self.echo:
                sys.__stdout__.write(raw + "\n")  # type: ignore[union-attr]
            event = self._parse(line)
            if event is not None and event.state != "progress":  # progress is for the screen, not the record
                self.events.append(event)
        if event is not None:
            self.on_event(event)

    def _parse(self, line: str) -> TaskEvent | None:
        # Packwise's own markers name the package type; kfp's lines do not, but they are the only
        # word on cache hits and on failures that happen before our code runs (e.g. an import error).
        marker = progress.parse(line)
        if marker is not None:
            return TaskEvent(
                marker["task"],
                marker["state"],
                float(marker.get("seconds", 0.0)),
                marker.get("package_type"),
                marker.get("error"),
                done=marker.get("done"),
                total=marker.get("total"),
                unit=marker.get("unit"),
                phase=marker.get("phase"),
            )
        if m := _FINISHED.search(line):
            if m.group(2) != "SUCCESS":
                self.kfp_failures.append(m.group(1))
            return None
        if m := _CACHE_HIT.search(line):
            task = _DEDUP_SUFFIX.sub("", m.group(1).strip("'"))
            return TaskEvent(task, "cached", package_type=_cached_subject(self.cache_root, m.group(2)))
        return None


def _subject(value: Any) -> str | None:
    """The package type (or else the shard) a task's outputs name: artifact metadata or a JSON summary."""
    if isinstance(value, str) and value.startswith("{"):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, dict):
        for key in ("package_type", "shard"):
            if isinstance(value.get(key), str):
                return str(value[key])
        if isinstance(value.get("metadata"), dict):  # an artifact as kfp.local's cache stores it
            return _subject(value["metadata"])
    return None


def _cached_subject(cache_root: Path | None, key_prefix: str) -> str | None:
    """What a cache hit's task worked on, read from its kfp.local cache entry (`<key>.json`); None if unknown.

    kfp logs only the task name (`train`, `register-2`) and the key's first 12 hex digits; the stored outputs
    (a model's metadata, a training summary, a shard's statistics) name the package type or the shard.
    """
    if cache_root is None:
        return None
    for entry in sorted(cache_root.glob(f"{key_prefix}*.json")):
        with contextlib.suppress(OSError, ValueError):
            outputs = json.loads(entry.read_text())
            found = [s for v in outputs.values() if (s := _subject(v)) is not None] if isinstance(outputs, dict) else []
            if found:
                return found[0]
    return None


class _LineStream(io.TextIOBase):
    """A stdout replacement that hands complete lines to a ProgressLog."""

    def __init__(self, sink: ProgressLog) -> None:
        self.sink = sink
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            self._partial += s
            *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.sink.feed_line(line)
        return len(s)

    def flush(self) -> None:
        pass


class _LineHandler(logging.Handler):
    def __init__(self, sink: ProgressLog) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        for line in self.format(record).splitlines():
            self.sink.feed_line(line)


@contextlib.contextmanager
def captured(progress: ProgressLog) -> Iterator[None]:
    """Routes stdout and root logging into `progress` for the duration."""
    root = logging.getLogger()
    handler = _LineHandler(progress)
    old_level = root.level
    # kfp.local swaps the root handlers per task without a lock; two loop iterations at once can leave
    # one of its stdout handlers behind. Put back exactly what was there before.
    old_handlers = root.handlers[:]
    # Likewise kfp.local's indented_print() wraps builtins.print per task and, with two loop iterations
    # at once, can restore the wrong one: every later task then prints one more level of indentation
    # (seen growing to 65,000 spaces a line over a long test session). Put print back too.
    old_print = builtins.print
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    stream = _LineStream(progress)
    try:
        with contextlib.redirect_stdout(stream), warnings.catch_warnings():
            # Our images are not named "python"; the subprocess runner's hint about that is noise here.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            yield
    finally:
        stream.write("\n")
        root.handlers[:] = old_handlers
        root.setLevel(old_level)
        builtins.print = old_print


@dataclass
class LocalRun:
    run_id: str
    succeeded: bool
    seconds: float
    events: list[TaskEvent]
    log_path: Path
    failed_tasks: list[str]


# Label on every task container of the docker runner: the storage root it works on. Finds a run's containers
# (`docker ps --filter label=io.packwise.storage-root=/path`) and lets tests follow exactly theirs.
CONTAINER_LABEL = "io.packwise.storage-root"


def docker_run_args(config: PackwiseConfig) -> dict[str, Any]:
    """`docker run` arguments that let a task in its image see what a subprocess task sees.

    Tasks receive absolute host paths (storage root, warehouse file, sqlite registry), so each is
    bind-mounted at the same path. Tasks run as the caller's uid:gid so their files stay the caller's (the
    images default to a non-root user; a cluster runs them as that). Host networking lets a webhook on the
    host's localhost be reached. PACKWISE_FAIL_TASK is passed on so resume drills work in containers too, and
    the variable named by notify.webhook_url_env so the notify task finds its URL.
    Each container carries CONTAINER_LABEL with the storage root.
    """
    import os
    from urllib.parse import unquote, urlparse

    from docker.types import Mount

    resolved = config.resolved()
    root = resolved.storage.workspace  # an s3:// root is reached over the network, like any service
    root.mkdir(parents=True, exist_ok=True)
    wanted = [root, resolved.warehouse.path.parent]
    for uri in (resolved.registry.tracking_uri, resolved.registry.artifact_root):
        parsed = urlparse(uri or "")
        if parsed.scheme == "sqlite" and parsed.path.startswith("//"):
            wanted.append(Path(unquote(parsed.path[1:])).parent)
        elif parsed.scheme == "file":
            wanted.append(Path(unquote(parsed.path)))
    mounts: list[Path] = []
    for path in sorted({p.resolve() for p in wanted if p.is_absolute() and p.exists()}, key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(m) for m in mounts):  # a parent already mounted covers it
            mounts.append(path)
    args: dict[str, Any] = {
        "mounts": [Mount(target=str(m), source=str(m), type="bind") for m in mounts],
        "user": f"{os.getuid()}:{os.getgid()}",
        "network_mode": "host",
        "labels": {CONTAINER_LABEL: str(root)},
    }
    environment = dict(task_environment())
    # by name only: the values (PACKWISE_FAIL_TASK, the webhook URL's secret variable) never enter config or IR
    names = ["PACKWISE_FAIL_TASK", resolved.notify.webhook_url_env]
    if resolved.storage.is_object_store:  # the standard AWS chain's settings, by name, for the containers' S3 client
        names += [*_AWS_ENV]
    for name in names:
        if name and os.environ.get(name):
            environment[name] = os.environ[name]
    args["environment"] = environment
    return args


_AWS_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)

# kfp.local runs at most this many tasks at once (its ParallelExecutor caps every ParallelFor at two).
LOCAL_CONCURRENT_TASKS = 2


def task_environment() -> dict[str, str]:
    """Environment every local task gets: its share of the cores as OMP_NUM_THREADS (XGBoost's default),
    and the cores it shares (``PACKWISE_LOCAL_CORES``, `packwise.cores.shard_threads`).

    Two tasks each running XGBoost on every core oversubscribe the machine, and OpenMP's spinning
    barriers then made a 0.3 s training take 7-35 s on two cores. A value the caller set is kept (and
    then no task takes more).
    """
    import os

    from packwise.cores import LOCAL_CORES_ENV, available_cores

    if os.environ.get("OMP_NUM_THREADS"):
        return {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}
    cores = available_cores()
    return {"OMP_NUM_THREADS": str(max(1, cores // LOCAL_CONCURRENT_TASKS)), LOCAL_CORES_ENV: str(cores)}


@contextlib.contextmanager
def _subprocess_environment(extra: dict[str, str]) -> Iterator[None]:
    """`extra` in os.environ while kfp.local's subprocess tasks (which inherit it) run; restored after."""
    import os

    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _run_temp_dir(run_id: str, enabled: bool) -> Iterator[dict[str, str]]:
    """A temporary directory for one local run's subprocess tasks, removed when the run ends.

    Each KFP Python component starts with `mktemp -d` for its program file and never removes it: the
    subprocess runner left one `/tmp/tmp.*` per task. Tasks get TMPDIR pointing here (yielded as the
    environment to add), so those and anything else the tasks leave in TMPDIR go with the run. The docker
    runner's tasks make theirs inside their containers: nothing to do there (`enabled=False`).
    """
    if not enabled:
        yield {}
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"packwise-{run_id}-", ignore_cleanup_errors=True) as tmp:
        yield {"TMPDIR": tmp}


def init_local(config: PackwiseConfig, runner: Runner) -> None:
    """kfp.local with caching on, outputs and cache under storage.root (storage.local_dir for an s3:// root:
    kfp.local supports only a local pipeline root)."""
    if runner == "docker":
        runner_obj: Any = local.DockerRunner(**docker_run_args(config))
    else:
        runner_obj = local.SubprocessRunner(use_venv=False)
    local.init(
        runner=runner_obj,
        pipeline_root=str(config.storage.pipeline_root),
        raise_on_error=False,
        enable_caching=True,
        cache_root=str(config.storage.cache_root),
    )


def new_run_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def run_pipeline_locally(
    pipeline: Any,
    arguments: dict[str, Any],
    config: PackwiseConfig,
    run_id: str,
    runner: Runner = "subprocess",
    verbose: bool = False,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> LocalRun:
    """Runs a compiled-in-memory pipeline with kfp.local and reports its tasks.

    Raises:
        ConfigError: `run_id` does not match the run id pattern (checked before anything is written).
    """
    check_run_id(run_id, "run id")
    init_local(config, runner)
    log_path = config.storage.workspace / "logs" / f"{run_id}.log"
    progress_log = ProgressLog(
        log_path=log_path, on_event=on_event or (lambda e: None), echo=verbose, cache_root=config.storage.cache_root
    )
    start = time.perf_counter()
    try:
        with (
            captured(progress_log),
            _run_temp_dir(run_id, enabled=runner != "docker") as tmp_env,
            _subprocess_environment({**task_environment(), **tmp_env} if runner != "docker" else {}),
        ):
            pipeline(**arguments, run_id=run_id)
    finally:
        progress_log.close()
    seconds = time.perf_counter() - start
    failed = [e.label for e in progress_log.events if e.state == "failed"]
    # a task that died before Packwise's code ran leaves only kfp's word for it
    failed += [t for t in progress_log.kfp_failures if not any(f.startswith(t) for f in failed)]
    return LocalRun(
        run_id=run_id,
        succeeded=not failed,
        seconds=seconds,
        events=progress_log.events,
        log_path=log_path,
        failed_tasks=failed,
    )


def training_run(
    config: PackwiseConfig,
    week: int,
    runner: Runner = "subprocess",
    verbose: bool = False,
    run_id: str | None = None,
    images: ImageSet | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> LocalRun:
    """Runs the weekly training pipeline locally on `config` (resolved) for `week`."""
    from packwise_pipelines.training import build_training_pipeline

    pipeline = build_training_pipeline(images or resolve_images(), config)
    return run_pipeline_locally(
        pipeline, {"week": week}, config, run_id or new_run_id("training"), runner, verbose, on_event
    )


def inference_run(
    config: PackwiseConfig,
    mode: str,
    pinned_models: dict[str, int] | None = None,
    runner: Runner = "subprocess",
    verbose: bool = False,
    run_id: str | None = None,
    images: ImageSet | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
) -> LocalRun:
    """Runs the inference pipeline locally on `config` (resolved) in `mode` (daily or monthly).

    A run id loads its predictions once: running the same run id again (after a failure, or on purpose)
    finishes it or changes nothing.
    """
    from packwise_pipelines.inference import build_inference_pipeline

    pipeline = build_inference_pipeline(images or resolve_images(), config)
    arguments = {"mode": mode, "pinned_models": dict(pinned_models or {})}
    return run_pipeline_locally(
        pipeline, arguments, config, run_id or new_run_id(f"inference-{mode}"), runner, verbose, on_event
    )
