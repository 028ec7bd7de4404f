"""Drift between MLflow and the audit trail, found and repaired (``packwise registry verify [--repair]``).

The audit trail decides each version's status. MLflow shows it four more times: the version tag
``packwise.status``, the run tag of the same name, the version description (``<status>: <reason>``) and,
for the newest Approved version, the ``champion`` alias. Any of those can be changed by hand in the MLflow
UI (one click moves an alias), and a crash can leave one unwritten; a run can be left RUNNING. ``find_drift``
lists every such difference; ``repair_drift`` rewrites MLflow from the trail and appends a ``repair`` event
to each version it touched, naming what was reset and who did it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from packwise.registry.mlflow_runs import run_tags, terminate_if_running
from packwise.registry.mlflow_store import CHAMPION_ALIAS, TAG_STATUS, decision_line
from packwise.registry.records import AuditEvent, Drift, Status, utc_now

if TYPE_CHECKING:
    from packwise.registry.mlflow_backend import MlflowRegistry

VERSION_TAG = "version tag"
RUN_TAG = "run tag"
DESCRIPTION = "description"
RUN_STATE = "run state"
ALIAS = "champion alias"


def find_drift(registry: MlflowRegistry, package_type: str | None = None) -> list[Drift]:
    """Every place MLflow disagrees with the audit trail, for one package type or all.

    Args:
        registry: The MLflow registry.
        package_type: One package type, or None for every registered one.

    Returns:
        The drifts, by package type then version; empty when MLflow and the trail agree.
    """
    types = [package_type] if package_type is not None else registry.registered_package_types()
    out: list[Drift] = []
    for kind in types:
        versions = registry.mlflow_versions(kind)
        for mv, version in sorted(versions, key=lambda pair: pair[1].version):
            status = str(version.status)
            tags = dict(mv.tags or {})
            if tags.get(TAG_STATUS) != status:
                out.append(
                    Drift(
                        package_type=kind,
                        version=version.version,
                        what=VERSION_TAG,
                        found=tags.get(TAG_STATUS, ""),
                        expected=status,
                    )
                )
            if mv.run_id:
                run = registry.client.get_run(mv.run_id)
                found_run = run_tags(registry.client, mv.run_id).get(TAG_STATUS, "")
                if found_run != status:
                    out.append(
                        Drift(
                            package_type=kind, version=version.version, what=RUN_TAG, found=found_run, expected=status
                        )
                    )
                if run.info.status == "RUNNING":
                    out.append(
                        Drift(
                            package_type=kind,
                            version=version.version,
                            what=RUN_STATE,
                            found="RUNNING",
                            expected="FINISHED",
                        )
                    )
            expected_description = decision_line(status, version.reason)
            if (mv.description or "") != expected_description:
                out.append(
                    Drift(
                        package_type=kind,
                        version=version.version,
                        what=DESCRIPTION,
                        found=mv.description or "",
                        expected=expected_description,
                    )
                )
        approved = [v for _, v in versions if v.status == Status.APPROVED]
        champion = max((v.version for v in approved), default=None)
        alias = registry.alias_version(kind)
        if alias != champion:
            out.append(
                Drift(
                    package_type=kind,
                    version=champion or 0,
                    what=ALIAS,
                    found="none" if alias is None else f"v{alias}",
                    expected="none" if champion is None else f"v{champion}",
                )
            )
    return out


def repair_drift(registry: MlflowRegistry, *, who: str, package_type: str | None = None) -> list[Drift]:
    """Puts MLflow back in line with the audit trail and audits each repair.

    Args:
        registry: The MLflow registry.
        who: The person repairing, recorded in the audit trail.
        package_type: One package type, or None for every registered one.

    Returns:
        The drifts that were repaired (what ``find_drift`` reported before).
    """
    drifts = find_drift(registry, package_type)
    by_version: dict[tuple[str, int], list[Drift]] = defaultdict(list)
    for drift in drifts:
        by_version[(drift.package_type, drift.version)].append(drift)
    for (kind, number), found in sorted(by_version.items()):
        if number == 0:  # the alias names a version although none is Approved: nothing to audit it on
            registry.sync_champion_alias(kind)
            continue
        mv = registry._mlflow_version(kind, number)
        version = registry.get(kind, number)
        what = "; ".join(f"{d.what} was {d.found!r}" for d in found)
        event = AuditEvent(
            at=utc_now(),
            who=who or "unknown",
            from_status=version.status,
            to_status=version.status,
            reason=f"repaired by `packwise registry verify --repair`: {what}",
            action="repair",
        )
        registry.append_audit(mv, event)
        if mv.run_id:
            terminate_if_running(registry.client, mv.run_id)
        registry.project_status(mv, version)
        if any(d.what == ALIAS for d in found):
            registry.sync_champion_alias(kind)
    return drifts


def verify_registry(registry: object, *, repair: bool, who: str, package_type: str | None = None) -> list[Drift]:
    """``packwise registry verify [--repair]`` on any registry: its MLflow store (or MLflow mirror).

    Args:
        registry: What ``open_registry`` returned.
        repair: Repair the drift (audited) instead of only reporting it.
        who: Who repairs, for the audit trail.
        package_type: One package type, or None for all.

    Returns:
        The drift found (and, with ``repair``, repaired).

    Raises:
        RegistryError: The registry has no MLflow side to verify.
    """
    from packwise.errors import RegistryError
    from packwise.registry.mlflow_backend import MlflowRegistry

    target = registry if isinstance(registry, MlflowRegistry) else getattr(registry, "mirror", None)
    if not isinstance(target, MlflowRegistry):
        raise RegistryError(
            "this registry has no MLflow store to verify; set registry.backend to mlflow, or registry.mirror "
            "to mlflow with the sagemaker backend"
        )
    if repair:
        return repair_drift(target, who=who, package_type=package_type)
    return find_drift(target, package_type)


__all__ = [
    "ALIAS",
    "CHAMPION_ALIAS",
    "DESCRIPTION",
    "RUN_STATE",
    "RUN_TAG",
    "VERSION_TAG",
    "find_drift",
    "repair_drift",
    "verify_registry",
]
