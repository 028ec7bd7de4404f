"""SageMaker job names derived from what a job computes.

A training job's name is a function of the package type, the data fingerprint and the candidate's
identity (the training config sections); a transform job's of the package type, the data, and the model
file. A step that is retried, resumed or run again on the same inputs therefore derives the same name and
attaches to the job that already exists instead of paying for a duplicate. The pipeline run id is left
out on purpose: a resumed local run has a new run id, and a task input that changes every run would
defeat the task cache. Names are unique per account and region forever, so a retry after a Failed or
Stopped job takes the next attempt suffix (``-r2``, ``-r3``...).
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9-]+")


def _clean(part: str) -> str:
    return _NOT_ALLOWED.sub("-", part).strip("-")


def job_name(kind: str, package_type: str, fingerprint: str, *identity: str) -> str:
    """``pw-<kind>-<package type>-<fingerprint 12>-<identity hash 8>``, at most 63 characters.

    Args:
        kind: ``train``, ``eval`` or ``score``.
        package_type: The package type (underscores become hyphens).
        fingerprint: The data fingerprint (first 12 characters are kept).
        identity: Whatever else decides the job's result (candidate key, model digest, shard...).
    """
    digest = hashlib.sha256("\0".join((kind, package_type, fingerprint, *identity)).encode()).hexdigest()[:8]
    tail = f"-{_clean(fingerprint)[:12]}-{digest}"
    head = f"pw-{_clean(kind)}-{_clean(package_type)}"
    room = MAX_NAME - len(tail) - len("-r99")  # leave room for an attempt suffix
    return (head[:room].rstrip("-") + tail).lower()


def attempt_name(base: str, attempt: int) -> str:
    """The name of attempt ``attempt`` (1 is the base name itself)."""
    return base if attempt <= 1 else f"{base}-r{attempt}"


def model_name(package_type: str, model_digest: str) -> str:
    """A SageMaker Model per model file: ``pw-model-<package type>-<sha256 16>``."""
    head = f"pw-model-{_clean(package_type)}"[: MAX_NAME - 17]
    return f"{head}-{model_digest[:16]}".lower()
