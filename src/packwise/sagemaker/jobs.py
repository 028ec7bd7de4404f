"""The life of a SageMaker job as a pipeline step sees it: create or attach, wait, stop when cancelled.

- ``start_or_attach`` derives the attempt name, attaches to a job of that name that is running or done,
  and creates it otherwise; a Failed or Stopped earlier attempt stays for the record and the next
  attempt suffix is used.
- ``wait_for_jobs`` waits with boto3's waiters (``training_job_completed_or_stopped``,
  ``transform_job_completed_or_stopped``, ``processing_job_completed_or_stopped``; a check every
  ``poll_interval_s``) until all jobs complete; a job
  that ends Failed or Stopped fails the step with SageMaker's FailureReason; past ``timeout_s`` the step
  stops its jobs (no one waits for their result any more) and fails.
- ``stop_on_cancel``: KFP cancels a task by terminating its pod (SIGTERM); the step then stops the jobs
  it started or attached to before it exits, so a cancelled run leaves nothing billing.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from packwise.errors import first_line
from packwise.sagemaker.errors import JobFailedError, JobTimeoutError, SageMakerError, StepCancelled
from packwise.sagemaker.naming import attempt_name
from packwise.sagemaker.session import aws_call, error_code

COMPLETED = "Completed"
ENDED_BADLY = frozenset({"Failed", "Stopped"})
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class JobKind:
    """The API names of one kind of SageMaker job."""

    label: str
    create: str
    describe: str
    stop: str
    name_key: str
    status_key: str
    log_group: str
    waiter: str


TRAINING = JobKind(
    label="training job",
    create="create_training_job",
    describe="describe_training_job",
    stop="stop_training_job",
    name_key="TrainingJobName",
    status_key="TrainingJobStatus",
    log_group="/aws/sagemaker/TrainingJobs",
    waiter="training_job_completed_or_stopped",
)
TRANSFORM = JobKind(
    label="transform job",
    create="create_transform_job",
    describe="describe_transform_job",
    stop="stop_transform_job",
    name_key="TransformJobName",
    status_key="TransformJobStatus",
    log_group="/aws/sagemaker/TransformJobs",
    waiter="transform_job_completed_or_stopped",
)
PROCESSING = JobKind(
    label="processing job",
    create="create_processing_job",
    describe="describe_processing_job",
    stop="stop_processing_job",
    name_key="ProcessingJobName",
    status_key="ProcessingJobStatus",
    log_group="/aws/sagemaker/ProcessingJobs",
    waiter="processing_job_completed_or_stopped",
)


def _not_found(err: BaseException) -> bool:
    text = str(err).lower()
    return error_code(err) in {"ValidationException", "ResourceNotFound"} and (
        "not found" in text or "could not find" in text or "does not exist" in text
    )


def describe_job(client: Any, kind: JobKind, name: str) -> dict[str, Any] | None:
    """The job's description, or None when no job has that name."""
    from botocore.exceptions import ClientError

    try:
        described: dict[str, Any] = getattr(client, kind.describe)(**{kind.name_key: name})
    except ClientError as err:
        if _not_found(err):
            return None
        raise SageMakerError(f"cannot describe {kind.label} {name}: {first_line(err)}") from err
    return described


@dataclass(frozen=True)
class JobHandle:
    """A job this step waits for; ``created`` is False when it attached to an existing one."""

    kind: JobKind
    name: str
    created: bool


def start_or_attach(
    client: Any,
    kind: JobKind,
    base_name: str,
    request: Callable[[str], Mapping[str, Any]],
    prepare: Callable[[str], None] | None = None,
    on_wait: Callable[[float], None] = time.sleep,
    poll_interval_s: float = 30.0,
) -> JobHandle:
    """Attaches to the job of this step if it is running or done, else creates it.

    Args:
        client: The SageMaker client.
        kind: Training, transform or processing.
        base_name: The derived name (see ``packwise.sagemaker.naming``).
        request: The create request for a given job name (without the name key).
        prepare: Called with the job name before creating it (stages the inputs); skipped when attaching.
        on_wait: Sleep function, while a Stopping job of an earlier attempt ends.
        poll_interval_s: Seconds between checks of a Stopping job.
    """
    from botocore.exceptions import ClientError

    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = attempt_name(base_name, attempt)
        found = describe_job(client, kind, name)
        while found is not None and found[kind.status_key] == "Stopping":
            on_wait(poll_interval_s)  # a cancelled earlier attempt: let it end, then take the next name
            found = describe_job(client, kind, name)
        if found is not None and found[kind.status_key] in ENDED_BADLY:
            continue
        if found is not None:
            return JobHandle(kind, name, created=False)
        if prepare is not None:
            prepare(name)
        try:
            getattr(client, kind.create)(**{kind.name_key: name, **request(name)})
        except ClientError as err:
            if error_code(err) == "ResourceInUse" or "already exists" in str(err).lower():
                return JobHandle(kind, name, created=False)  # another task made it a moment ago
            raise SageMakerError(f"cannot create {kind.label} {name}: {first_line(err)}") from err
        return JobHandle(kind, name, created=True)
    raise SageMakerError(
        f"{kind.label} {base_name} failed {MAX_ATTEMPTS} times; fix the cause shown in its FailureReason first"
    )


def stop_job(client: Any, job: JobHandle) -> None:
    """Asks SageMaker to stop a job; a job that already ended is left alone."""
    from botocore.exceptions import ClientError

    with contextlib.suppress(ClientError):
        getattr(client, job.kind.stop)(**{job.kind.name_key: job.name})


def waiter_config(poll_interval_s: float, timeout_s: float) -> dict[str, float | int]:
    """boto3's WaiterConfig for one wait: a check every ``poll_interval_s``, ``timeout_s`` in all."""
    return {"Delay": poll_interval_s, "MaxAttempts": max(1, math.ceil(timeout_s / poll_interval_s))}


def _failed(job: JobHandle, described: Mapping[str, Any]) -> JobFailedError:
    status = described[job.kind.status_key]
    reason = described.get("FailureReason") or "no FailureReason given"
    return JobFailedError(
        f"SageMaker {job.kind.label} {job.name} ended {status}: {reason} "
        f"(logs: CloudWatch {job.kind.log_group}/{job.name}); fix the cause and re-run the step"
    )


def wait_for_jobs(
    client: Any, jobs: list[JobHandle], poll_interval_s: float, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Waits (boto3 waiters) until every job completed; returns each job's final description by name.

    The jobs run at the same time, so waiting for them one after another takes as long as the slowest;
    ``timeout_s`` bounds the whole wait.

    Raises:
        JobFailedError: A job ended Failed or Stopped (with its FailureReason).
        JobTimeoutError: Not all done within ``timeout_s``; the unfinished jobs were asked to stop.
    """
    from botocore.exceptions import WaiterError

    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    for job in jobs:
        remaining = max(deadline - time.monotonic(), poll_interval_s)
        try:
            client.get_waiter(job.kind.waiter).wait(
                **{job.kind.name_key: job.name}, WaiterConfig=waiter_config(poll_interval_s, remaining)
            )
        except WaiterError as err:
            last = err.last_response or {}
            if last.get(job.kind.status_key) in ENDED_BADLY:
                raise _failed(job, last) from None
            if "Max attempts exceeded" not in str(err):
                raise SageMakerError(f"cannot check {job.kind.label} {job.name}: {first_line(err)}") from err
            pending = [j for j in jobs if j.name not in done]
            for unfinished in pending:
                stop_job(client, unfinished)
            raise JobTimeoutError(
                f"SageMaker {job.kind.label} {job.name} did not finish within {timeout_s:g}s "
                "(sagemaker.timeout_s); it was asked to stop; raise the timeout or use larger instances"
            ) from None
        describe = getattr(client, job.kind.describe)
        described = aws_call(
            f"check {job.kind.label} {job.name}", functools.partial(describe, **{job.kind.name_key: job.name})
        )
        if described[job.kind.status_key] != COMPLETED:  # the waiter's success states include Stopped
            raise _failed(job, described)
        done[job.name] = described
    return done


def run_job(
    client: Any,
    kind: JobKind,
    base_name: str,
    request: Mapping[str, Any],
    prepare: Callable[[str], None] | None,
    poll_interval_s: float,
    timeout_s: float,
    after_create: Callable[[JobHandle], None] | None = None,
) -> tuple[JobHandle, dict[str, Any]]:
    """One job from start to end: `start_or_attach`, then `wait_for_jobs`, stopped if the step is cancelled.

    Args:
        client: The SageMaker client.
        kind: Training, transform or processing.
        base_name: The derived name (see ``packwise.sagemaker.naming``).
        request: The create request (without the name key).
        prepare: Stages the inputs before the job is created; skipped when attaching.
        poll_interval_s: Seconds between checks.
        timeout_s: The longest wait.
        after_create: Called once the job exists (fault-injection drills use it).

    Returns:
        The job and its final description.
    """
    jobs: list[JobHandle] = []
    with stop_on_cancel(client, jobs):
        job = start_or_attach(client, kind, base_name, lambda _: request, prepare, time.sleep, poll_interval_s)
        jobs.append(job)
        if after_create is not None:
            after_create(job)
        described = wait_for_jobs(client, jobs, poll_interval_s, timeout_s)
    return job, described[job.name]


@contextlib.contextmanager
def stop_on_cancel(client: Any, jobs: list[JobHandle]) -> Iterator[None]:
    """Stops ``jobs`` (read when it happens, so jobs appended later count) if the step is cancelled.

    SIGTERM (a cancelled KFP task's pod) becomes ``StepCancelled``; it and Ctrl-C stop every job in the
    list and propagate. Outside the main thread no handler can be installed; Ctrl-C still works.
    """
    previous: Any = None
    installed = threading.current_thread() is threading.main_thread()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise StepCancelled(f"signal {signum}")

    if installed:
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except (StepCancelled, KeyboardInterrupt):
        for job in jobs:
            stop_job(client, job)
        raise
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)
