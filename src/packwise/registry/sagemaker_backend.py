"""SageMaker Model Registry backend (the MLflow mirror that follows it: `packwise.registry.mirrored`).

Layout in SageMaker:

- one model package group per package type, ``{prefix}-{package type}`` (underscores become hyphens: group
  names allow letters, digits and hyphens only);
- one versioned model package per registered candidate: its ``ModelPackageVersion`` is our version
  number, its ``ModelApprovalStatus`` our status (the source of truth of the champion, which is the newest
  Approved version), its inference specification the container that serves the ``model.tar.gz`` as it is
  (`packwise.sagemaker.packwise_image.serving_container`): the built-in XGBoost 3.0-5 container (CSV of
  the tabular features) only with ``sagemaker.training_image: builtin`` and a type that reads no text, else
  Packwise's image (``sagemaker.packwise_image_uri``, whose ``serve`` scores raw product columns as
  parquet); its model quality statistics the validation metrics as JSON in S3; identity, metrics and label
  statistics also ride in ``CustomerMetadataProperties``;
- per version, a record in S3 (``<prefix>/registry/<group>/<candidate key>/record.json``) with the gate
  report and the audit trail (who, when, from, to, why for every status change), which SageMaker does not
  keep (it holds only the latest ``ApprovalDescription``). A status changed outside Packwise (SageMaker
  Studio) still counts: it shows in the trail as an event of ``LastModifiedBy``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packwise.artifact import carries_stacked_columns
from packwise.config import SageMakerConfig
from packwise.errors import PackwiseError, RegistryError, first_line
from packwise.registry import (
    AuditEvent,
    Candidate,
    ModelVersion,
    RegistryBackend,
    Status,
    candidate_model_file,
    check_candidate,
    not_found,
    utc_now,
    validate_package_type,
)
from packwise.sagemaker.errors import SageMakerError
from packwise.sagemaker.packwise_image import serving_container
from packwise.sagemaker.session import (
    Clients,
    S3Uri,
    base_uri,
    download_file,
    error_code,
    get_text,
    put_text,
    upload_model_file,
)

if TYPE_CHECKING:
    from packwise.registry.mlflow_backend import MlflowRegistry

MODEL_FILE_NAME = "model.tar.gz"
MAX_PROPERTY = 256
MAX_DESCRIPTION = 1024
_READ_THREADS = 8

P_PACKAGE_TYPE = "packwise.package_type"
P_CANDIDATE_KEY = "packwise.candidate_key"
P_FINGERPRINT = "packwise.data_fingerprint"
P_MODEL_TYPE = "packwise.model_type"
P_RUN_ID = "packwise.run_id"
P_CREATED_AT = "packwise.created_at"
P_METRICS = "packwise.metrics"
P_LABEL_STATS = "packwise.label_stats"
P_RECORD = "packwise.record"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compact(data: Mapping[str, Any]) -> str:
    return json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in data.items()}, sort_keys=True)


class SageMakerRegistry(RegistryBackend):
    """The ``Registry`` on SageMaker Model Registry (model package groups) and S3.

    Args:
        clients: SageMaker and S3 clients (``packwise.sagemaker.session.open_clients``).
        config: The ``sagemaker`` section: bucket, prefix, container image, tags.
        model_name_prefix: Groups are named ``{prefix}-{package type}``.
    """

    def __init__(self, clients: Clients, config: SageMakerConfig, model_name_prefix: str = "packwise") -> None:
        self.clients = clients
        self.config = config
        self.model_name_prefix = model_name_prefix

    # -- plumbing -------------------------------------------------------------------------------------

    def group_name(self, package_type: str) -> str:
        """The model package group of a package type."""
        return f"{self.model_name_prefix}-{package_type}".replace("_", "-")

    def _record_uri(self, package_type: str, candidate_key: str) -> S3Uri:
        return base_uri(self.config, "registry", self.group_name(package_type), candidate_key, "record.json")

    def _call(self, what: str, fn: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except SageMakerError as err:
            raise RegistryError(str(err)) from err
        except (ClientError, BotoCoreError) as err:
            raise RegistryError(
                f"cannot {what} in the SageMaker Model Registry ({first_line(err)}); check sagemaker.region, "
                "the credentials and their IAM permissions"
            ) from err

    def _summaries(self, package_type: str) -> list[dict[str, Any]]:
        """Every versioned package of the type's group (empty when the group does not exist yet)."""
        from botocore.exceptions import ClientError

        group = self.group_name(package_type)
        paginator = self.clients.sagemaker.get_paginator("list_model_packages")
        try:
            pages = list(paginator.paginate(ModelPackageGroupName=group, ModelPackageType="Versioned"))
        except ClientError as err:
            if "does not exist" in str(err).lower() or error_code(err) == "ResourceNotFound":
                return []
            raise
        return [s for page in pages for s in page.get("ModelPackageSummaryList", [])]

    def _groups(self) -> list[str]:
        paginator = self.clients.sagemaker.get_paginator("list_model_package_groups")
        pages = paginator.paginate(NameContains=f"{self.model_name_prefix}-")
        return [g["ModelPackageGroupName"] for page in pages for g in page.get("ModelPackageGroupSummaryList", [])]

    def _to_version(self, described: Mapping[str, Any]) -> ModelVersion | None:
        props: dict[str, str] = dict(described.get("CustomerMetadataProperties") or {})
        if P_PACKAGE_TYPE not in props or P_CANDIDATE_KEY not in props:
            return None  # not registered by Packwise
        record = self._read_record(props.get(P_RECORD, ""))
        status = Status(described["ModelApprovalStatus"])
        audit = [AuditEvent.model_validate(e) for e in record.get("audit", [])]
        if audit and audit[-1].to_status != status:  # changed outside Packwise (e.g. SageMaker Studio)
            who = (described.get("LastModifiedBy") or {}).get("UserProfileName") or "SageMaker (outside Packwise)"
            modified: Any = described.get("LastModifiedTime") or ""
            audit.append(
                AuditEvent(
                    at=modified.isoformat() if hasattr(modified, "isoformat") else str(modified),
                    who=str(who),
                    from_status=audit[-1].to_status,
                    to_status=status,
                    reason=str(described.get("ApprovalDescription") or "changed outside Packwise"),
                )
            )
        containers = (described.get("InferenceSpecification") or {}).get("Containers") or [{}]
        return ModelVersion(
            package_type=props[P_PACKAGE_TYPE],
            version=int(described["ModelPackageVersion"]),
            status=status,
            created_at=props.get(P_CREATED_AT, ""),
            run_id=record.get("run_id", props.get(P_RUN_ID, "")),
            candidate_key=props[P_CANDIDATE_KEY],
            data_fingerprint=props.get(P_FINGERPRINT, ""),
            model_type=props.get(P_MODEL_TYPE, ""),
            metrics={k: float(v) for k, v in record.get("metrics", json.loads(props.get(P_METRICS, "{}"))).items()},
            label_stats=dict(record.get("label_stats", json.loads(props.get(P_LABEL_STATS, "{}")))),
            gate_report=str(record.get("gate_report", "")),
            audit=audit,
            artifact_uri=str(containers[0].get("ModelDataUrl", "")),
        )

    def _read_record(self, uri: str) -> dict[str, Any]:
        if not uri:
            return {}
        try:
            data: dict[str, Any] = json.loads(get_text(self.clients, S3Uri.parse(uri)))
        except SageMakerError as err:
            raise RegistryError(f"cannot read the Packwise record {uri} ({err}); check S3 read access") from err
        return data

    def _describe(self, arn: str) -> dict[str, Any]:
        described: dict[str, Any] = self.clients.sagemaker.describe_model_package(ModelPackageName=arn)
        return described

    def _arn(self, package_type: str, version: int) -> str:
        for summary in self._summaries(package_type):
            if int(summary.get("ModelPackageVersion", 0)) == version:
                return str(summary["ModelPackageArn"])
        raise not_found(package_type, version)

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, package_type: str, version: int) -> ModelVersion:
        """One version of a package type.

        Raises:
            ModelNotFoundError: It does not exist (or was not registered by Packwise).
        """
        validate_package_type(package_type)
        arn = self._call(f"find {package_type} v{version}", lambda: self._arn(package_type, version))
        found = self._to_version(self._call(f"describe {package_type} v{version}", lambda: self._describe(arn)))
        if found is None:
            raise not_found(package_type, version)
        return found

    def list_versions(self, package_type: str | None = None) -> list[ModelVersion]:
        """Versions of one package type (newest first) or of all (by creation, newest first)."""
        if package_type is not None:
            validate_package_type(package_type)
            arns = [s["ModelPackageArn"] for s in self._call("list versions", lambda: self._summaries(package_type))]
        else:
            groups = self._call("list model package groups", self._groups)
            arns = []
            for group in groups:
                pages = self.clients.sagemaker.get_paginator("list_model_packages").paginate(
                    ModelPackageGroupName=group, ModelPackageType="Versioned"
                )
                arns += [s["ModelPackageArn"] for p in pages for s in p.get("ModelPackageSummaryList", [])]

        def read(arn: str) -> ModelVersion | None:
            return self._to_version(self._describe(arn))

        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            found = self._call("describe versions", lambda: list(pool.map(read, arns)))
        out = [v for v in found if v is not None]
        out.sort(key=lambda v: (v.created_at, v.package_type, v.version), reverse=True)
        if package_type is not None:
            out.sort(key=lambda v: v.version, reverse=True)
        return out

    def download_model(self, package_type: str, version: int, dest_dir: Path) -> Path:
        """Copies a version's ``model.tar.gz`` from S3 to ``dest_dir/model.tar.gz``."""
        found = self.get(package_type, version)
        dest_dir = Path(dest_dir)
        target = dest_dir / MODEL_FILE_NAME
        self._call(
            f"download {package_type} v{version}",
            lambda: download_file(self.clients, S3Uri.parse(found.artifact_uri), target),
        )
        return target

    # -- writes ---------------------------------------------------------------------------------------

    def _ensure_group(self, package_type: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.clients.sagemaker.create_model_package_group(
                ModelPackageGroupName=self.group_name(package_type),
                ModelPackageGroupDescription=f"Packwise suitability classifier for package type {package_type}.",
                Tags=[{"Key": "packwise:package-type", "Value": package_type}],
            )
        except ClientError as err:
            if "already exists" not in str(err).lower() and error_code(err) != "ResourceInUse":
                raise

    def register(self, candidate: Candidate) -> ModelVersion:
        """Registers a candidate as a new model package version, or returns the version of ``candidate_key``.

        The record (gate report, audit) and the model file go to S3 first, then the model package is created
        with ``ClientToken`` = the candidate key, so a retried call cannot create a twin. If creation fails
        nothing is registered (an orphan record is harmless: only a package points at it).

        Raises:
            RegistryError: Invalid input, or SageMaker/S3 refused (nothing was registered).
        """
        c = candidate
        package_type, candidate_key, run_id, who = c.package_type, c.candidate_key, c.run_id, c.who
        data_fingerprint, model_type, gate_report = c.data_fingerprint, c.model_type, c.gate_report
        status, text = check_candidate(c)
        existing = self.find_by_candidate_key(package_type, candidate_key)
        if existing is not None:
            return existing
        model_file = candidate_model_file(c)

        created_at = utc_now()
        creation = AuditEvent(at=created_at, who=who or "unknown", from_status=None, to_status=status, reason=text)
        metric_values = {str(k): float(v) for k, v in c.metrics.items()}
        stats = {str(k): v for k, v in c.label_stats.items()}
        record_uri = self._record_uri(package_type, candidate_key)
        record = {
            "package_type": package_type,
            "candidate_key": candidate_key,
            "run_id": run_id,
            "metrics": metric_values,
            "label_stats": stats,
            "gate_report": gate_report,
            "audit": [creation.model_dump(mode="json")],
        }
        metrics_uri = S3Uri(record_uri.bucket, record_uri.key.rsplit("/", 1)[0] + "/metrics.json")
        report_uri = S3Uri(record_uri.bucket, record_uri.key.rsplit("/", 1)[0] + "/gate_report.md")
        props = {
            P_PACKAGE_TYPE: package_type,
            P_CANDIDATE_KEY: candidate_key,
            P_FINGERPRINT: _clip(data_fingerprint, MAX_PROPERTY),
            P_MODEL_TYPE: _clip(model_type, MAX_PROPERTY),
            P_RUN_ID: _clip(run_id, MAX_PROPERTY),
            P_CREATED_AT: created_at,
            P_LABEL_STATS: _clip(_compact(stats), MAX_PROPERTY),
            P_METRICS: _clip(_compact(metric_values), MAX_PROPERTY),
            P_RECORD: str(record_uri),
        }
        if len(props[P_METRICS]) >= MAX_PROPERTY:
            props[P_METRICS] = "{}"  # the record holds them all
        # SageMaker refuses an empty property value; a pipeline registers before its run id is known
        props = {k: v for k, v in props.items() if v}
        try:  # before anything is written: a package its image cannot serve is not registered
            stacked = carries_stacked_columns(model_file)
            serving = serving_container(self.config, self.clients.region, model_type, stacked)
        except (PackwiseError, SageMakerError) as err:
            raise RegistryError(f"cannot register {package_type} candidate {candidate_key}: {err}") from err

        def write() -> str:
            self._ensure_group(package_type)
            model_data = upload_model_file(self.clients, self.config, model_file)
            put_text(self.clients, metrics_uri, json.dumps(metric_values, sort_keys=True), "application/json")
            put_text(self.clients, report_uri, gate_report, "text/markdown")
            put_text(self.clients, record_uri, json.dumps(record, sort_keys=True), "application/json")
            response = self.clients.sagemaker.create_model_package(
                ModelPackageGroupName=self.group_name(package_type),
                ModelPackageDescription=_clip(text, MAX_DESCRIPTION),
                ModelApprovalStatus=str(status),
                ClientToken=candidate_key[:36],
                InferenceSpecification={
                    "Containers": [{"Image": serving.image, "ModelDataUrl": str(model_data)}],
                    "SupportedContentTypes": [serving.content_type],
                    "SupportedResponseMIMETypes": [serving.content_type],
                    "SupportedTransformInstanceTypes": [self.config.transform_instance_type],
                },
                ModelMetrics={
                    "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": str(metrics_uri)}}
                },
                CustomerMetadataProperties=props,
                Tags=[{"Key": k, "Value": v} for k, v in sorted(self.config.tags.items())],
            )
            return str(response["ModelPackageArn"])

        try:
            arn = write()
        except (SageMakerError, RegistryError) as err:
            raise RegistryError(
                f"registering {package_type} candidate {candidate_key} failed ({err}); nothing was registered "
                "and the champion is unchanged; fix the cause and re-run"
            ) from err
        except Exception as err:
            raise RegistryError(
                f"registering {package_type} candidate {candidate_key} failed ({first_line(err)}); nothing was "
                "registered and the champion is unchanged; check the IAM permissions and re-run"
            ) from err

        # Two tasks racing on one candidate both passed the check above: the oldest version wins.
        winner = self.find_by_candidate_key(package_type, candidate_key)
        mine = self._to_version(self._describe(arn))
        if winner is not None and mine is not None and winner.version != mine.version:
            with contextlib.suppress(Exception):
                self.clients.sagemaker.delete_model_package(ModelPackageName=arn)
            return winner
        if mine is None:  # pragma: no cover - we just wrote its properties
            raise RegistryError(f"{package_type}: the new model package {arn} has no Packwise properties")
        return mine

    def _write_run_id(self, current: ModelVersion, run_id: str) -> None:
        """The S3 record holds the run id (its ``packwise.run_id`` property keeps the registration's value)."""
        arn = self._call("find the version", lambda: self._arn(current.package_type, current.version))
        described = self._call("describe the version", lambda: self._describe(arn))
        record_uri = S3Uri.parse(dict(described.get("CustomerMetadataProperties") or {})[P_RECORD])
        record = {**self._read_record(str(record_uri)), "run_id": run_id}
        self._call(
            f"record the run of {current.package_type} v{current.version}",
            lambda: put_text(self.clients, record_uri, json.dumps(record, sort_keys=True)),
        )

    def _write_status(self, current: ModelVersion, event: AuditEvent) -> None:
        """Appends the event to the S3 record, then sets ``ModelApprovalStatus``; restores the record on failure."""
        arn = self._call("find the version", lambda: self._arn(current.package_type, current.version))
        described = self._call("describe the version", lambda: self._describe(arn))
        props = dict(described.get("CustomerMetadataProperties") or {})
        record_uri = S3Uri.parse(props[P_RECORD])
        before = self._read_record(str(record_uri))
        after = {**before, "audit": [*before.get("audit", []), event.model_dump(mode="json")]}
        what = f"change {current.package_type} v{current.version} to {event.to_status}"
        self._call(what, lambda: put_text(self.clients, record_uri, json.dumps(after, sort_keys=True)))
        try:
            self.clients.sagemaker.update_model_package(
                ModelPackageArn=arn,
                ModelApprovalStatus=str(event.to_status),
                ApprovalDescription=_clip(f"{event.who}: {event.reason}", MAX_DESCRIPTION),
                # sent whole: some implementations replace the map instead of merging it
                CustomerMetadataProperties=props,
            )
        except Exception as err:
            with contextlib.suppress(Exception):
                put_text(self.clients, record_uri, json.dumps(before, sort_keys=True))
            raise RegistryError(f"failed to {what} ({first_line(err)}); the status is unchanged, retry") from err


def open_sagemaker_registry(
    config: SageMakerConfig,
    model_name_prefix: str,
    mirror: MlflowRegistry | None = None,
    clients: Clients | None = None,
) -> RegistryBackend:
    """The SageMaker registry on ``config``, wrapped by the MLflow mirror when one is given."""
    from packwise.sagemaker.session import open_clients

    try:
        primary = SageMakerRegistry(clients or open_clients(config), config, model_name_prefix)
    except SageMakerError as err:
        raise RegistryError(str(err)) from err
    from packwise.registry.mirrored import MirroredRegistry

    return primary if mirror is None else MirroredRegistry(primary, mirror)
