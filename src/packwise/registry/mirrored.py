"""The MLflow mirror of a primary registry (SageMaker).

``MirroredRegistry`` writes SageMaker first, then MLflow: every version registered in MLflow with the same
identity, metrics, gate report and status (the ``packwise.status`` tag; the ``champion`` alias follows it),
so the MLflow UI compares versions. Reads come from SageMaker. A mirror write that fails leaves SageMaker
as written and raises; running the step again, or ``MirroredRegistry.sync()``, catches the mirror up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from packwise.errors import RegistryError
from packwise.registry import AuditEvent, Candidate, ModelVersion, RegistryBackend, utc_now

if TYPE_CHECKING:
    from packwise.registry.mlflow_backend import MlflowRegistry


class MirroredRegistry(RegistryBackend):
    """A primary registry (SageMaker) whose every version and status change is copied to MLflow.

    Reads, champion and the transition rules come from the primary. Each write goes to the primary first,
    then the same version (found by candidate key) is brought level in the mirror: registered if missing,
    its status set if it differs. The MLflow version carries the tag ``packwise.sagemaker_version``.
    """

    def __init__(self, primary: RegistryBackend, mirror: MlflowRegistry) -> None:
        self.primary = primary
        self.mirror = mirror

    def get(self, package_type: str, version: int) -> ModelVersion:
        return self.primary.get(package_type, version)

    def list_versions(self, package_type: str | None = None) -> list[ModelVersion]:
        return self.primary.list_versions(package_type)

    def download_model(self, package_type: str, version: int, dest_dir: Path) -> Path:
        return self.primary.download_model(package_type, version, dest_dir)

    def register(self, candidate: Candidate) -> ModelVersion:
        """Registers in the primary (idempotent), then mirrors that version."""
        version = self.primary.register(candidate)
        self._mirror_version(version, candidate.model_file)
        return version

    def _write_run_id(self, current: ModelVersion, run_id: str) -> None:
        self.primary._write_run_id(current, run_id)
        mirrored = self.mirror.find_by_candidate_key(current.package_type, current.candidate_key)
        if mirrored is not None:
            self.mirror.record_run(current.package_type, mirrored.version, run_id)

    def _write_status(self, current: ModelVersion, event: AuditEvent) -> None:
        self.primary._write_status(current, event)
        self._mirror_version(self.primary.get(current.package_type, current.version), None, event)

    def _mirror_version(self, version: ModelVersion, model_file: Path | None, event: AuditEvent | None = None) -> None:
        import tempfile

        try:
            mirrored = self.mirror.find_by_candidate_key(version.package_type, version.candidate_key)
            if mirrored is None:
                with tempfile.TemporaryDirectory(prefix="packwise-mirror-") as tmp:
                    if model_file is None:
                        model_file = self.primary.download_model(version.package_type, version.version, Path(tmp))
                    first = version.audit[0] if version.audit else None
                    mirrored = self.mirror.register(
                        Candidate(
                            package_type=version.package_type,
                            model_file=model_file,
                            status=first.to_status if first else version.status,
                            candidate_key=version.candidate_key,
                            data_fingerprint=version.data_fingerprint,
                            model_type=version.model_type,
                            metrics=version.metrics,
                            label_stats=version.label_stats,
                            gate_report=version.gate_report,
                            reason=first.reason if first else "mirrored from SageMaker",
                            who=first.who if first else "packwise-mirror",
                            run_id=version.run_id,
                        )
                    )
                self.mirror.client.set_model_version_tag(
                    self.mirror.model_name(version.package_type),
                    str(mirrored.version),
                    "packwise.sagemaker_version",
                    str(version.version),
                )
            if mirrored.status != version.status:
                change = event or AuditEvent(
                    at=utc_now(),
                    who="packwise-mirror",
                    from_status=mirrored.status,
                    to_status=version.status,
                    reason=f"mirrored from SageMaker v{version.version}: {version.reason}",
                )
                self.mirror._write_status(mirrored, change)
        except RegistryError as err:
            raise RegistryError(
                f"{version.package_type} v{version.version} is {version.status} in SageMaker, but the MLflow "
                f"mirror failed ({err}); re-run the step (or MirroredRegistry.sync()) to catch the mirror up"
            ) from err

    def sync(self, package_type: str | None = None) -> int:
        """Brings every primary version level in the mirror; returns how many versions were checked."""
        versions = self.primary.list_versions(package_type)
        for version in sorted(versions, key=lambda v: (v.package_type, v.version)):
            self._mirror_version(version, None)
        return len(versions)
