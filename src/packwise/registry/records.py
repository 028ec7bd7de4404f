"""The registry's records: statuses, audit events, versions, candidates and what training reports.

Plain pydantic models (JSON in and out through ``model_dump(mode="json")`` / ``model_validate``), with no
backend imports, so reading them costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """Approval status of a model version; the same strings as SageMaker's ``ModelApprovalStatus``."""

    APPROVED = "Approved"
    REJECTED = "Rejected"
    PENDING = "PendingManualApproval"


def utc_now() -> str:
    """The current time as ISO-8601 UTC with milliseconds, e.g. ``2025-01-31T09:00:00.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AuditEvent(BaseModel):
    """One entry of a version's audit trail: a status change, or a repair of what MLflow shows.

    Attributes:
        at: When, as an ISO-8601 UTC string.
        who: The person or pipeline that made the change.
        from_status: The status before the change; None for the creation event.
        to_status: The status after the change (for a repair: the status, unchanged).
        reason: Why, in one line.
        action: ``status`` for a status change (or the creation), ``repair`` when ``packwise registry
            verify --repair`` put MLflow's view of the version back in line with this trail.
    """

    model_config = ConfigDict(frozen=True)

    at: str
    who: str
    from_status: Status | None
    to_status: Status
    reason: str
    action: Literal["status", "repair"] = "status"


class ModelVersion(BaseModel):
    """One registered classifier of a package type, as the registry reports it.

    Attributes:
        package_type: The package type the classifier decides suitability for.
        version: Version number within the package type, starting at 1.
        status: Current approval status (the last status change of ``audit``).
        created_at: Registration time, ISO-8601 UTC.
        run_id: The pipeline run that produced the model.
        candidate_key: Identity of the candidate; registering the same key twice returns the first version.
        data_fingerprint: Fingerprint of the label snapshot it was trained on.
        model_type: The model type plugin name (``model.type``).
        metrics: Validation-split metrics, e.g. ``auc``, ``pr_auc``, ``log_loss``.
        label_stats: ``count`` (int) and ``positive_rate`` (float) of its training labels.
        gate_report: The promotion gate's report, markdown.
        audit: Every status change (and repair), oldest first; the first is the creation.
        artifact_uri: URI of the stored ``model.tar.gz``.
    """

    model_config = ConfigDict(frozen=True)

    package_type: str
    version: int
    status: Status
    created_at: str
    run_id: str
    candidate_key: str
    data_fingerprint: str
    model_type: str
    metrics: dict[str, float] = Field(default_factory=dict)
    label_stats: dict[str, int | float] = Field(default_factory=dict)
    gate_report: str = ""
    audit: list[AuditEvent] = Field(default_factory=list)
    artifact_uri: str = ""

    @property
    def decision(self) -> AuditEvent | None:
        """The latest status change (repairs skipped): what the version's description states."""
        changes = [event for event in self.audit if event.action == "status"]
        return changes[-1] if changes else None

    @property
    def reason(self) -> str:
        """The reason of the latest status change (at first, the gate decision's reason)."""
        decision = self.decision
        return decision.reason if decision else ""

    @property
    def ever_approved(self) -> bool:
        """Whether the version was Approved at any point of its audit trail."""
        return self.status == Status.APPROVED or any(e.to_status == Status.APPROVED for e in self.audit)


class TrainingRecord(BaseModel):
    """How a candidate was trained, for the MLflow run that shows it (every field optional).

    Attributes:
        pipeline_run_id: The KFP run (the parent MLflow run is the one tagged ``kfp.pipeline_run_id``
            with it); empty: the parent is named after the week and fingerprint instead.
        week: The training week.
        model_params: The model type's hyperparameters (``model.params`` and ``num_boost_round``).
        split: How train and validation were cut, e.g. ``{"validation_fraction": 0.2, "seed": 7}``.
        label_counts: ``positive`` and ``negative`` labels of the training rows.
        input_example: A few raw product rows (column -> value), for the model's signature and example.
        snapshot_uri: Where the label snapshot lives (logged as the run's ``mlflow.data`` input).
        candidate_metrics: The candidate's full ``ScoreMetrics.model_dump(mode="json")`` on the validation split.
        champion_metrics: The champion's, re-scored on the same split; None without a champion.
        champion_version: The champion version that was re-scored.
    """

    model_config = ConfigDict(frozen=True)

    pipeline_run_id: str = ""
    week: int | None = None
    model_params: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict)
    label_counts: dict[str, int] = Field(default_factory=dict)
    input_example: list[dict[str, Any]] = Field(default_factory=list)
    snapshot_uri: str = ""
    candidate_metrics: dict[str, Any] | None = None
    champion_metrics: dict[str, Any] | None = None
    champion_version: int | None = None


@dataclass(frozen=True)
class Candidate:
    """A trained model to register, with everything its version records."""

    package_type: str
    model_file: Path  # the packaged model (a model.tar.gz; stored under that name whatever its name)
    status: Status  # initial status, from the gate decision
    candidate_key: str  # the candidate's identity: registering it again returns the first version
    data_fingerprint: str  # fingerprint of the label snapshot it was trained on
    model_type: str  # model type plugin name
    metrics: Mapping[str, float]  # validation metrics (auc, pr_auc, log_loss, ...)
    label_stats: Mapping[str, float]  # count and positive_rate of the training labels
    gate_report: str  # Markdown report of the gate
    reason: str  # the gate decision's one-line reason (version description, first audit event)
    who: str  # who registers: a pipeline or a person
    run_id: str  # lineage handle of the producing run
    training: TrainingRecord | None = None  # how it was trained, shown in its MLflow run


class Drift(BaseModel):
    """One place where MLflow shows something the audit trail does not say.

    Attributes:
        package_type: The package type.
        version: The version concerned (for the alias: the version it should name, 0 when none).
        what: Which view drifted: ``version tag``, ``run tag``, ``description`` or ``champion alias``.
        found: What MLflow shows.
        expected: What the audit trail says it should show.
    """

    model_config = ConfigDict(frozen=True)

    package_type: str
    version: int
    what: str
    found: str
    expected: str

    def line(self) -> str:
        """One line for people, e.g. ``mailer v2: champion alias names v3, the audit trail says v2``."""
        return f"{self.package_type} v{self.version}: {self.what} is {self.found!r}, audit trail says {self.expected!r}"
