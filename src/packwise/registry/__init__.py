"""The model registry: one classifier lineage per package type, a champion each, and an audit trail.

Every version carries a status with SageMaker's ``ModelApprovalStatus`` strings. The champion of a package
type is its newest Approved version (by version number); training registers every candidate, approved or
not, so a person can later approve, reject or roll back from the CLI.

This module defines the ``Registry`` protocol and the backend-independent rules (transitions, champion,
rollback) in ``RegistryBackend``; the records live in ``packwise.registry.records``. Backends live in their
own modules and are imported only by ``open_registry``, so importing this module stays fast (no mlflow).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from packwise.errors import ModelNotFoundError, RegistryError
from packwise.registry.records import (
    AuditEvent,
    Candidate,
    Drift,
    ModelVersion,
    Status,
    TrainingRecord,
    utc_now,
)

if TYPE_CHECKING:
    from packwise.config import RegistryConfig

__all__ = [
    "AuditEvent",
    "Candidate",
    "Drift",
    "ModelVersion",
    "Registry",
    "RegistryBackend",
    "Status",
    "TrainingRecord",
    "open_registry",
    "utc_now",
]


@runtime_checkable
class Registry(Protocol):
    """What Packwise needs from a model registry: ``mlflow`` (the local default) or ``sagemaker``."""

    def register(self, candidate: Candidate) -> ModelVersion:
        """Registers a candidate; returns the existing version if ``candidate_key`` is already registered."""
        ...

    def record_run(self, package_type: str, version: int, run_id: str) -> ModelVersion:
        """Stamps the pipeline run that registered ``version``, once (the first run to report it keeps it)."""
        ...

    def get(self, package_type: str, version: int) -> ModelVersion:
        """One version; ModelNotFoundError when it does not exist."""
        ...

    def list_versions(self, package_type: str | None = None) -> list[ModelVersion]:
        """Every version of one package type (or of all), newest first."""
        ...

    def champion(self, package_type: str) -> ModelVersion | None:
        """The newest Approved version of a package type, or None."""
        ...

    def find_by_candidate_key(self, package_type: str, key: str) -> ModelVersion | None:
        """The version registered for a candidate key, or None."""
        ...

    def download_model(self, package_type: str, version: int, dest_dir: Path) -> Path:
        """Copies the version's ``model.tar.gz`` into ``dest_dir``; returns its local path."""
        ...

    def set_status(self, package_type: str, version: int, status: Status, *, who: str, reason: str) -> ModelVersion:
        """Changes the status and appends an audit event; returns the updated version."""
        ...

    def approve(self, package_type: str, version: int, *, who: str, reason: str) -> ModelVersion:
        """Sets a version Approved."""
        ...

    def reject(self, package_type: str, version: int, *, who: str, reason: str) -> ModelVersion:
        """Sets a version Rejected."""
        ...

    def rollback(self, package_type: str, *, who: str, reason: str, to_version: int | None = None) -> ModelVersion:
        """Restores an earlier Approved version as champion; returns the new champion."""
        ...


def _list_hint(package_type: str) -> str:
    return f"run `packwise registry list --type {package_type}` to see its versions"


def not_found(package_type: str, version: int) -> ModelNotFoundError:
    """The one-line error for a version that does not exist."""
    return ModelNotFoundError(f"no {package_type} model version {version}; {_list_hint(package_type)}")


def require_reason(reason: str) -> str:
    """The stripped reason; RegistryError when it is empty."""
    text = " ".join(reason.split())
    if not text:
        raise RegistryError("a reason is required for every status change; pass --reason 'why'")
    return text


def validate_package_type(package_type: str) -> None:
    """RegistryError unless `package_type` is a lower_snake_case name (registry names are built from it)."""
    from packwise.config import PACKAGE_TYPE_NAME

    if not PACKAGE_TYPE_NAME.match(package_type):
        raise RegistryError(
            f"package type {package_type!r} is not lower_snake_case; use a name from package_types in the config"
        )


def check_candidate(candidate: Candidate) -> tuple[Status, str]:
    """The candidate's status and reason once its package type, reason and key are valid (before any lookup).

    Raises:
        RegistryError: The package type is not a plain name, the reason or the candidate key is empty.
    """
    validate_package_type(candidate.package_type)
    status = Status(candidate.status)
    text = require_reason(candidate.reason)
    if not candidate.candidate_key.strip():
        raise RegistryError("candidate_key is empty; pass the candidate's identity so re-runs are idempotent")
    return status, text


def candidate_model_file(candidate: Candidate) -> Path:
    """The candidate's model file; RegistryError when it does not exist."""
    model_file = Path(candidate.model_file)
    if not model_file.is_file():
        raise RegistryError(f"model file {model_file} does not exist; pass the trained model.tar.gz")
    return model_file


class RegistryBackend(abc.ABC):
    """Rules every backend shares, on top of a few storage primitives.

    A backend implements ``register``, ``get``, ``list_versions``, ``download_model`` and
    ``_write_status``; champion selection, transitions and rollback are decided here, once.
    """

    @abc.abstractmethod
    def register(self, candidate: Candidate) -> ModelVersion:
        """See ``Registry.register``."""

    @abc.abstractmethod
    def get(self, package_type: str, version: int) -> ModelVersion:
        """See ``Registry.get``."""

    @abc.abstractmethod
    def list_versions(self, package_type: str | None = None) -> list[ModelVersion]:
        """See ``Registry.list_versions``."""

    @abc.abstractmethod
    def download_model(self, package_type: str, version: int, dest_dir: Path) -> Path:
        """See ``Registry.download_model``."""

    @abc.abstractmethod
    def _write_status(self, current: ModelVersion, event: AuditEvent) -> None:
        """Stores ``event`` in the audit trail and ``event.to_status`` as the status, or nothing on error."""

    @abc.abstractmethod
    def _write_run_id(self, current: ModelVersion, run_id: str) -> None:
        """Stores ``run_id`` as the version's pipeline run."""

    def record_run(self, package_type: str, version: int, run_id: str) -> ModelVersion:
        """Stamps the pipeline run that registered ``version``, once: the first run to report it keeps it.

        The register task is cached, and a run id among its inputs would make every run a cache miss, so it
        registers without one and the run's exit handler (never cached) stamps it here.
        """
        current = self.get(package_type, version)
        if current.run_id or not run_id.strip():
            return current
        self._write_run_id(current, run_id.strip())
        return self.get(package_type, version)

    def champion(self, package_type: str) -> ModelVersion | None:
        """The champion of ``package_type`` (``newest_approved``); a backend may check more first."""
        return self.newest_approved(package_type)

    def newest_approved(self, package_type: str) -> ModelVersion | None:
        """The newest Approved version of ``package_type`` by version number, or None.

        Derived from the statuses (the source of truth), never from a backend's alias.
        """
        approved = [v for v in self.list_versions(package_type) if v.status == Status.APPROVED]
        return max(approved, key=lambda v: v.version, default=None)

    def find_by_candidate_key(self, package_type: str, key: str) -> ModelVersion | None:
        """The (oldest) version registered for candidate ``key``, or None."""
        matches = [v for v in self.list_versions(package_type) if v.candidate_key == key]
        return min(matches, key=lambda v: v.version, default=None)

    def set_status(self, package_type: str, version: int, status: Status, *, who: str, reason: str) -> ModelVersion:
        """Changes the status of a version and appends an audit event.

        Args:
            package_type: The version's package type.
            version: The version number.
            status: The new status; must differ from the current one.
            who: The person making the change.
            reason: Why; required, one line.

        Returns:
            The updated version.

        Raises:
            ModelNotFoundError: The version does not exist.
            RegistryError: Empty reason, or the version already has ``status``.
        """
        text = require_reason(reason)
        status = Status(status)
        current = self.get(package_type, version)
        if current.status == status:
            raise RegistryError(
                f"{package_type} v{version} is already {status}; nothing to change ({_list_hint(package_type)})"
            )
        event = AuditEvent(
            at=utc_now(), who=who or "unknown", from_status=current.status, to_status=status, reason=text
        )
        self._write_status(current, event)
        return self.get(package_type, version)

    def approve(self, package_type: str, version: int, *, who: str, reason: str) -> ModelVersion:
        """Sets a version Approved; it becomes champion if no newer version is Approved."""
        return self.set_status(package_type, version, Status.APPROVED, who=who, reason=reason)

    def reject(self, package_type: str, version: int, *, who: str, reason: str) -> ModelVersion:
        """Sets a version Rejected; if it was champion, the previous Approved version takes over."""
        return self.set_status(package_type, version, Status.REJECTED, who=who, reason=reason)

    def rollback(self, package_type: str, *, who: str, reason: str, to_version: int | None = None) -> ModelVersion:
        """Restores an earlier Approved version as the champion of ``package_type``.

        Without ``to_version`` the current champion is set Rejected (reason ``rolled back: <reason>``) and
        the previous Approved version becomes champion. With ``to_version`` that version (which must have
        been Approved at some point) is set Approved if it is not, then every newer Approved version is
        set Rejected, oldest first, so the champion changes only with the last write.

        Args:
            package_type: The package type to roll back.
            who: The person rolling back.
            reason: Why; required.
            to_version: The version to restore; default the previous Approved one.

        Returns:
            The new champion.

        Raises:
            ModelNotFoundError: ``to_version`` does not exist.
            RegistryError: Nothing to roll back to, or ``to_version`` was never Approved.
        """
        text = require_reason(reason)
        versions = self.list_versions(package_type)
        approved = sorted((v for v in versions if v.status == Status.APPROVED), key=lambda v: v.version)
        if to_version is None:
            if not approved:
                raise RegistryError(f"{package_type} has no Approved version to roll back; {_list_hint(package_type)}")
            current = approved[-1]
            if len(approved) < 2:
                raise RegistryError(
                    f"{package_type} v{current.version} is the only Approved version, so there is nothing to "
                    f"roll back to; approve an earlier version or pass --to VERSION"
                )
            self.set_status(package_type, current.version, Status.REJECTED, who=who, reason=f"rolled back: {text}")
        else:
            target = next((v for v in versions if v.version == to_version), None)
            if target is None:
                raise not_found(package_type, to_version)
            if not target.ever_approved:
                raise RegistryError(
                    f"{package_type} v{to_version} was never Approved, so it cannot be rolled back to; "
                    f"use `packwise registry approve {package_type} {to_version}` to promote a new version"
                )
            newer = [v for v in approved if v.version > to_version]
            if target.status == Status.APPROVED and not newer:
                raise RegistryError(f"{package_type} v{to_version} is already the champion; nothing to roll back")
            if target.status != Status.APPROVED:
                self.set_status(
                    package_type, to_version, Status.APPROVED, who=who, reason=f"restored by rollback: {text}"
                )
            for version in newer:
                self.set_status(
                    package_type,
                    version.version,
                    Status.REJECTED,
                    who=who,
                    reason=f"rolled back to v{to_version}: {text}",
                )
        champion = self.newest_approved(package_type)
        if champion is None:  # pragma: no cover - both branches leave an Approved version
            raise RegistryError(f"{package_type} has no champion after the rollback; {_list_hint(package_type)}")
        return champion


def open_registry(config: RegistryConfig) -> Registry:
    """The registry backend chosen by ``config.backend``.

    Args:
        config: A resolved registry configuration (``PackwiseConfig.resolved().registry``).

    Returns:
        The backend; opening it writes nothing.

    Raises:
        RegistryError: The configuration is not resolved or names an unknown backend.
    """
    if config.tracking_uri is None or (config.artifact_root is None and not config.uses_tracking_server):
        raise RegistryError(
            "registry.tracking_uri or registry.artifact_root is unset; call PackwiseConfig.resolved() "
            "before opening the registry"
        )
    if config.backend == "mlflow":
        from packwise.registry.mlflow_backend import MlflowRegistry

        return MlflowRegistry(
            tracking_uri=config.tracking_uri,
            artifact_root=config.artifact_root,
            model_name_prefix=config.model_name_prefix,
        )
    if config.backend == "sagemaker":
        from packwise.registry.sagemaker_backend import open_sagemaker_registry

        if config.sagemaker is None:
            raise RegistryError(
                "registry.backend is sagemaker but the registry section carries no SageMaker settings; "
                "call PackwiseConfig.resolved() before opening the registry"
            )
        mirror = None
        if config.mirror == "mlflow":
            from packwise.registry.mlflow_backend import MlflowRegistry

            mirror = MlflowRegistry(
                tracking_uri=config.tracking_uri,
                artifact_root=config.artifact_root,
                model_name_prefix=config.model_name_prefix,
            )
        return open_sagemaker_registry(config.sagemaker, config.model_name_prefix, mirror)
    raise RegistryError(f"registry.backend {config.backend!r} is not supported; use 'mlflow' or 'sagemaker'")
