"""The MLflow store under the registry: names, tags, limits, and opening a client safely.

Layout in MLflow (see ``mlflow_backend`` for the rules):

- one registered model per package type, ``{prefix}-{package_type}``; alias ``champion`` on the newest
  Approved version; each version is an MLflow Model (pyfunc) whose description is its one-line decision;
- version tags, few and short: ``packwise.status``, ``packwise.package_type``, ``packwise.week``,
  ``packwise.data_fingerprint``, ``packwise.candidate_key``;
- one experiment, ``packwise-models``, tagged for MLflow 3's model-training view; per pipeline run a parent
  run (tagged ``kfp.pipeline_run_id`` as kfp's own MLflow integration does) and per package type a nested
  run with params, metrics, artifacts, the snapshot as dataset input, and the audit trail as run tags.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from filelock import FileLock
from mlflow.tracking import MlflowClient

from packwise.errors import RegistryError, first_line
from packwise.registry.records import AuditEvent

EXPERIMENT_NAME = "packwise-models"
CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT_DIR = "model"
MODEL_FILE_NAME = "model.tar.gz"
# The SageMaker-layout file inside the MLflow Model directory (the pyfunc's one artifact).
MODEL_FILE_PATH = f"{MODEL_ARTIFACT_DIR}/artifacts/{MODEL_FILE_NAME}"
LEGACY_MODEL_FILE_PATH = f"{MODEL_ARTIFACT_DIR}/{MODEL_FILE_NAME}"  # versions registered before MLflow Models
GATE_REPORT_FILE = "gate_report.md"

# MLflow 3 opens an experiment in the GenAI view unless it is tagged as model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# What kfp's MLflow integration tags its parent run with, and the variable it hands each task.
KFP_RUN_TAG = "kfp.pipeline_run_id"
KFP_PARENT_RUN_ENV = "KFP_MLFLOW_PARENT_RUN_ID"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
RUN_NOTE_TAG = "mlflow.note.content"

TAG_PREFIX = "packwise."
TAG_STATUS = "packwise.status"
TAG_PACKAGE_TYPE = "packwise.package_type"
TAG_CANDIDATE_KEY = "packwise.candidate_key"
TAG_FINGERPRINT = "packwise.data_fingerprint"
TAG_WEEK = "packwise.week"
TAG_RUN_ID = "packwise.run_id"
TAG_ROLE = "packwise.role"  # on runs: "pipeline" (parent) or "candidate" (one per package type)
AUDIT_TAG_PREFIX = "packwise.audit."
# Only on versions registered before MLflow Models (read, never written).
LEGACY_TAG_MODEL_TYPE = "packwise.model_type"
LEGACY_TAG_LABEL_STATS = "packwise.label_stats"
LEGACY_TAG_METRICS = "packwise.metrics"
LEGACY_TAG_CREATED_AT = "packwise.created_at"
LEGACY_TAG_GATE_REPORT = "packwise.gate_report"
LEGACY_TAG_ARTIFACT_URI = "packwise.artifact_uri"

PARAM_MODEL_TYPE = "model_type"
PARAM_CREATED_AT = "registered_at"
PARAM_LABEL_STATS = "label_stats"

# Model version tag values were VARCHAR(5000) in MLflow's schema before the migration to TEXT (3.x
# validates 100_000); descriptions are still VARCHAR(5000) and run tags are cut at 8000. Staying under
# 5000 everywhere keeps a version writable against any store a team may point us at.
MAX_TAG_VALUE = 5000
MAX_REPORT_NOTE = 4000
MAX_REASON = 1000
MAX_IDENTITY = 500
MAX_PARAM = 500
TRUNCATION_MARK = "\n\n... (truncated; the full report is the run's gate_report.md artifact)"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_tag(key: str, value: str) -> str:
    """``value``, or RegistryError when it is over ``MAX_TAG_VALUE`` (a bug here: every value is clipped)."""
    if len(value) > MAX_TAG_VALUE:
        raise RegistryError(f"tag {key} is {len(value)} characters, over the {MAX_TAG_VALUE} limit")
    return value


def audit_key(index: int) -> str:
    """The tag key of the ``index``-th audit event (1-based, zero-padded so keys sort)."""
    return f"{AUDIT_TAG_PREFIX}{index:04d}"


def audit_indices(tags: Mapping[str, str]) -> list[int]:
    """The indices of the audit tags among ``tags``."""
    out = []
    for key in tags:
        suffix = key.removeprefix(AUDIT_TAG_PREFIX)
        if key.startswith(AUDIT_TAG_PREFIX) and suffix.isdigit():
            out.append(int(suffix))
    return out


def audit_events(tags: Mapping[str, str]) -> list[AuditEvent]:
    """The audit trail stored in ``tags``, oldest first."""
    return [AuditEvent.model_validate(json.loads(tags[audit_key(i)])) for i in sorted(audit_indices(tags))]


def decision_line(status: str, reason: str) -> str:
    """A version's description: the one-line decision, led by its status, e.g. ``Approved: all criteria pass``.

    A reason that already opens with the status (the gate's ``approved: ...``) is not prefixed twice.
    """
    text = reason if reason.lower().startswith(status.lower()) else f"{status}: {reason}"
    return clip(text, MAX_REASON + 40)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI, or None for other stores and in-memory databases."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    # sqlite:////abs/file.db parses to path //abs/file.db and sqlite:///rel.db to /rel.db.
    return Path(unquote(parsed.path)[1:])


def open_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client on ``tracking_uri`` (also the registry URI), with its store initialised.

    A sqlite store is created (migrations included) under an exclusive file lock: the training pipeline's
    per-type tasks open the registry in parallel, and concurrent first migrations of one sqlite file
    corrupt its schema version.

    Raises:
        RegistryError: The store cannot be opened or created.
    """
    db_path = sqlite_path(tracking_uri)
    try:
        if db_path is None:
            return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        db_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .packwise/ yet
        with FileLock(db_path.with_name(db_path.name + ".lock")):
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            client.search_experiments(max_results=1)  # creates or migrates the tracking tables
            client.search_registered_models(max_results=1)  # and checks the registry schema
        return client
    except Exception as err:
        raise RegistryError(
            f"cannot open the MLflow store {tracking_uri} ({first_line(err)}); "
            "check registry.tracking_uri and that its directory is writable"
        ) from err


def delete_local_artifacts(artifact_uri: str) -> None:
    """Removes a run's artifact directory when it is on the local file system."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return
    path = Path(unquote(parsed.path))
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    run_dir = path.parent  # <artifact_root>/<run id>/artifacts: drop the run folder if nothing else is left
    if path.name == "artifacts" and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
