"""MLflow model registry backend: the local default (sqlite store, no server) and the mirror of SageMaker.

Layout in MLflow:

- one registered model per package type, named ``{prefix}-{package_type}``;
- one experiment (``packwise-models``, artifacts under ``registry.artifact_root``) whose runs hold each
  version's files: ``model/model.tar.gz`` and ``gate_report.md``, plus the validation metrics;
- every model version carries all packwise tags from its creation: ``packwise.status`` (the source of
  truth of the champion), identity, metrics, label stats and a truncated gate report; the audit trail is
  one tag per event (``packwise.audit.0001``, ...) so an append never rewrites history;
- the alias ``champion`` follows the newest Approved version, for people reading the MLflow UI only.

The client is built with explicit tracking and registry URIs; nothing global (``mlflow.set_*``) is touched.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from packwise.config import PACKAGE_TYPE_NAME
from packwise.errors import RegistryError, first_line
from packwise.registry import (
    AuditEvent,
    Candidate,
    ModelVersion,
    RegistryBackend,
    Status,
    not_found,
    require_reason,
    utc_now,
)

EXPERIMENT_NAME = "packwise-models"
CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT_DIR = "model"
MODEL_FILE_NAME = "model.tar.gz"
GATE_REPORT_FILE = "gate_report.md"

TAG_PREFIX = "packwise."
TAG_STATUS = "packwise.status"
TAG_PACKAGE_TYPE = "packwise.package_type"
TAG_CANDIDATE_KEY = "packwise.candidate_key"
TAG_FINGERPRINT = "packwise.data_fingerprint"
TAG_MODEL_TYPE = "packwise.model_type"
TAG_LABEL_STATS = "packwise.label_stats"
TAG_METRICS = "packwise.metrics"
TAG_RUN_ID = "packwise.run_id"
TAG_CREATED_AT = "packwise.created_at"
TAG_GATE_REPORT = "packwise.gate_report"
TAG_GATE_REPORT_TRUNCATED = "packwise.gate_report_truncated"
TAG_ARTIFACT_URI = "packwise.artifact_uri"
AUDIT_TAG_PREFIX = "packwise.audit."

# Model version tag values were VARCHAR(5000) in MLflow's schema before the migration to TEXT (3.x
# validates 100_000); descriptions are still VARCHAR(5000) and run tags are cut at 8000. Staying under
# 5000 everywhere keeps a version writable against any store a team may point us at.
MAX_TAG_VALUE = 5000
MAX_REPORT_TAG = 4000
MAX_REASON = 1000
MAX_IDENTITY = 500
_TRUNCATION_MARK = "\n\n... (truncated; the full report is the run's gate_report.md artifact)"
_PAGE = 1000

T = TypeVar("T")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_tag(key: str, value: str) -> str:
    if len(value) > MAX_TAG_VALUE:  # a bug in this module, not a user error: every value is clipped
        raise RegistryError(f"tag {key} is {len(value)} characters, over the {MAX_TAG_VALUE} limit")
    return value


def _audit_key(index: int) -> str:
    return f"{AUDIT_TAG_PREFIX}{index:04d}"


def _audit_events(tags: Mapping[str, str]) -> list[AuditEvent]:
    numbered = []
    for key, value in tags.items():
        suffix = key.removeprefix(AUDIT_TAG_PREFIX)
        if key.startswith(AUDIT_TAG_PREFIX) and suffix.isdigit():
            numbered.append((int(suffix), AuditEvent.from_dict(json.loads(value))))
    return [event for _, event in sorted(numbered, key=lambda pair: pair[0])]


def _validate_package_type(package_type: str) -> None:
    if not PACKAGE_TYPE_NAME.match(package_type):
        raise RegistryError(
            f"package type {package_type!r} is not lower_snake_case; use a name from package_types in the config"
        )


class MlflowRegistry(RegistryBackend):
    """The ``Registry`` on an MLflow tracking store and model registry.

    Args:
        tracking_uri: MLflow tracking URI (also used as the registry URI), e.g. ``sqlite:////abs/mlflow.db``.
        artifact_root: Artifact location of the experiment, e.g. ``file:///abs/mlartifacts``.
        model_name_prefix: Registered models are named ``{prefix}-{package_type}``.
        experiment_name: The experiment holding one run per version.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        artifact_root: str,
        model_name_prefix: str = "packwise",
        experiment_name: str = EXPERIMENT_NAME,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.model_name_prefix = model_name_prefix
        self.experiment_name = experiment_name
        self._client_instance: MlflowClient | None = None

    # -- plumbing -------------------------------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, created on first use with its store initialised.

        A sqlite store is created (migrations included) under an exclusive file lock: the training
        pipeline's per-type tasks open the registry in parallel, and concurrent first migrations of one
        sqlite file corrupt its schema version.

        Raises:
            RegistryError: The store cannot be opened or created.
        """
        if self._client_instance is None:
            db_path = _sqlite_path(self.tracking_uri)
            try:
                if db_path is None:
                    self._client_instance = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                else:
                    db_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .packwise/ yet
                    with _exclusive_lock(db_path.with_name(db_path.name + ".lock")):
                        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                        client.search_experiments(max_results=1)  # creates or migrates the tracking tables
                        client.search_registered_models(max_results=1)  # and checks the registry schema
                    self._client_instance = client
            except Exception as err:
                raise RegistryError(
                    f"cannot open the MLflow store {self.tracking_uri} ({first_line(err)}); "
                    "check registry.tracking_uri and that its directory is writable"
                ) from err
        return self._client_instance

    def model_name(self, package_type: str) -> str:
        """The registered model name of a package type."""
        return f"{self.model_name_prefix}-{package_type}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except MlflowException as err:
            raise RegistryError(
                f"MLflow registry at {self.tracking_uri} failed to {what} ({first_line(err)}); "
                "check registry.tracking_uri and that the store is reachable"
            ) from err

    def _search_versions(self, name: str) -> Iterator[MlflowModelVersion]:
        token: str | None = None
        while True:
            page = self.client.search_model_versions(
                filter_string=f"name = '{name}'", max_results=_PAGE, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                return

    def _all_versions(self, name: str) -> list[MlflowModelVersion]:
        return list(self._search_versions(name))

    def _registered_model_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        head = f"{self.model_name_prefix}-"
        while True:
            page = self.client.search_registered_models(max_results=_PAGE, page_token=token)
            for model in page:
                rest = model.name.removeprefix(head)
                if model.name.startswith(head) and PACKAGE_TYPE_NAME.match(rest):
                    names.append(model.name)
            token = page.token
            if not token:
                return names

    def _to_version(self, mv: MlflowModelVersion) -> ModelVersion | None:
        tags: dict[str, str] = dict(mv.tags or {})
        if TAG_STATUS not in tags or TAG_PACKAGE_TYPE not in tags:
            return None  # not written by packwise (e.g. registered by hand in the UI)
        return ModelVersion(
            package_type=tags[TAG_PACKAGE_TYPE],
            version=int(mv.version),
            status=Status(tags[TAG_STATUS]),
            created_at=tags.get(TAG_CREATED_AT, ""),
            run_id=tags.get(TAG_RUN_ID, ""),
            candidate_key=tags.get(TAG_CANDIDATE_KEY, ""),
            data_fingerprint=tags.get(TAG_FINGERPRINT, ""),
            model_type=tags.get(TAG_MODEL_TYPE, ""),
            metrics={k: float(v) for k, v in json.loads(tags.get(TAG_METRICS, "{}")).items()},
            label_stats=json.loads(tags.get(TAG_LABEL_STATS, "{}")),
            gate_report=tags.get(TAG_GATE_REPORT, ""),
            audit=_audit_events(tags),
            artifact_uri=tags.get(TAG_ARTIFACT_URI, f"{mv.source}/{MODEL_FILE_NAME}"),
        )

    def _mlflow_version(self, package_type: str, version: int) -> MlflowModelVersion:
        _validate_package_type(package_type)
        try:
            return self.client.get_model_version(self.model_name(package_type), str(version))
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise not_found(package_type, version) from None
            raise RegistryError(
                f"MLflow registry at {self.tracking_uri} failed to read {package_type} v{version} "
                f"({first_line(err)}); check registry.tracking_uri"
            ) from err

    def _sync_champion_alias(self, package_type: str) -> None:
        """Points the ``champion`` alias at the newest Approved version, or removes it when there is none."""
        name = self.model_name(package_type)
        champion = self.champion(package_type)
        if champion is not None:
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, str(champion.version))
            return
        try:
            self.client.delete_registered_model_alias(name, CHAMPION_ALIAS)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            try:
                return str(self.client.create_experiment(self.experiment_name, artifact_location=self.artifact_root))
            except MlflowException as err:  # created concurrently by another task
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise err from None
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)

    def _ensure_registered_model(self, package_type: str) -> None:
        name = self.model_name(package_type)
        try:
            self.client.get_registered_model(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                self.client.create_registered_model(
                    name,
                    tags={TAG_PACKAGE_TYPE: package_type},
                    description=f"Packwise suitability classifier for package type {package_type}.",
                )
            except MlflowException as exists:
                if exists.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, package_type: str, version: int) -> ModelVersion:
        """One version of a package type.

        Raises:
            ModelNotFoundError: It does not exist (or was not registered by packwise).
        """
        found = self._to_version(self._mlflow_version(package_type, version))
        if found is None:
            raise not_found(package_type, version)
        return found

    def list_versions(self, package_type: str | None = None) -> list[ModelVersion]:
        """Versions of one package type (by version, newest first) or of all (by creation, newest first)."""
        if package_type is not None:
            _validate_package_type(package_type)
            names = [self.model_name(package_type)]
        else:
            names = self._call("list registered models", self._registered_model_names)
        out: list[ModelVersion] = []
        for name in names:
            found = self._call(f"list versions of {name}", functools.partial(self._all_versions, name))
            for mv in found:
                version = self._to_version(mv)
                if version is not None:
                    out.append(version)
        out.sort(key=lambda v: (v.created_at, v.package_type, v.version), reverse=True)
        if package_type is not None:
            out.sort(key=lambda v: v.version, reverse=True)
        return out

    def download_model(self, package_type: str, version: int, dest_dir: Path) -> Path:
        """Copies a version's ``model.tar.gz`` to ``dest_dir/model.tar.gz`` and returns that path.

        Raises:
            ModelNotFoundError: The version does not exist.
            RegistryError: The artifact cannot be read.
        """
        mv = self._mlflow_version(package_type, version)
        if self._to_version(mv) is None or not mv.run_id:
            raise not_found(package_type, version)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / MODEL_FILE_NAME
        with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
            try:
                local = self.client.download_artifacts(
                    mv.run_id, f"{MODEL_ARTIFACT_DIR}/{MODEL_FILE_NAME}", dst_path=tmp
                )
            except (MlflowException, OSError) as err:
                raise RegistryError(
                    f"cannot download {package_type} v{version} model file ({first_line(err)}); "
                    "check that registry.artifact_root is readable from here"
                ) from err
            shutil.move(local, target)
        return target

    # -- writes ---------------------------------------------------------------------------------------

    def register(self, candidate: Candidate) -> ModelVersion:
        """Registers a candidate model as a new version, or returns the version of ``candidate_key``.

        All or nothing: if any step fails, the created model version and run are deleted, the champion
        is untouched, and RegistryError is raised.

        Args:
            candidate: The model and what its version records; a second registration of its
                ``candidate_key`` returns the first version.

        Returns:
            The registered (or already registered) version.

        Raises:
            RegistryError: Invalid input, or the store failed (nothing was registered).
        """
        c = candidate
        package_type, candidate_key, run_id, who = c.package_type, c.candidate_key, c.run_id, c.who
        data_fingerprint, model_type, gate_report = c.data_fingerprint, c.model_type, c.gate_report
        _validate_package_type(package_type)
        status = Status(c.status)
        text = _clip(require_reason(c.reason), MAX_REASON)
        if not candidate_key.strip():
            raise RegistryError("candidate_key is empty; pass the candidate's identity so re-runs are idempotent")
        existing = self.find_by_candidate_key(package_type, candidate_key)
        if existing is not None:
            return existing
        model_file = Path(c.model_file)
        if not model_file.is_file():
            raise RegistryError(f"model file {model_file} does not exist; pass the trained model.tar.gz")
        identity = {
            "candidate_key": candidate_key,
            "data_fingerprint": data_fingerprint,
            "model_type": model_type,
            "run_id": run_id,
        }
        for field_name, value in identity.items():
            if len(value) > MAX_IDENTITY:
                raise RegistryError(f"{field_name} is {len(value)} characters; keep it under {MAX_IDENTITY}")
        metric_values = {str(k): float(v) for k, v in c.metrics.items()}
        stats = {str(k): v for k, v in c.label_stats.items()}

        name = self.model_name(package_type)
        created_at = utc_now()
        creation = AuditEvent(at=created_at, who=who or "unknown", from_status=None, to_status=status, reason=text)
        report_tag = gate_report
        if len(report_tag) > MAX_REPORT_TAG:
            report_tag = gate_report[: MAX_REPORT_TAG - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK

        experiment_id: str = self._call("prepare the experiment", self._experiment_id)
        self._call(f"create the registered model {name}", lambda: self._ensure_registered_model(package_type))

        mlflow_run_id: str | None = None
        version_number: str | None = None
        try:
            run = self.client.create_run(
                experiment_id,
                run_name=_clip(f"{package_type}-{candidate_key}", 250),
                tags={
                    TAG_PACKAGE_TYPE: package_type,
                    TAG_CANDIDATE_KEY: candidate_key,
                    TAG_RUN_ID: run_id,
                    TAG_STATUS: str(status),
                },
            )
            mlflow_run_id = run.info.run_id
            with tempfile.TemporaryDirectory(prefix="packwise-register-") as tmp:
                staged = model_file
                if model_file.name != MODEL_FILE_NAME:  # KFP names output files after the output: "model"
                    staged = Path(tmp) / MODEL_FILE_NAME
                    shutil.copyfile(model_file, staged)
                self.client.log_artifact(mlflow_run_id, str(staged), MODEL_ARTIFACT_DIR)
                report_file = Path(tmp) / GATE_REPORT_FILE
                report_file.write_text(gate_report, encoding="utf-8")
                self.client.log_artifact(mlflow_run_id, str(report_file))
            if metric_values:
                now_ms = int(time.time() * 1000)
                self.client.log_batch(
                    mlflow_run_id, metrics=[Metric(k, v, now_ms, 0) for k, v in metric_values.items()]
                )
            source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}"
            tags = {
                TAG_STATUS: str(status),
                TAG_PACKAGE_TYPE: package_type,
                TAG_CANDIDATE_KEY: candidate_key,
                TAG_FINGERPRINT: data_fingerprint,
                TAG_MODEL_TYPE: model_type,
                TAG_LABEL_STATS: json.dumps(stats, sort_keys=True),
                TAG_METRICS: json.dumps(metric_values, sort_keys=True),
                TAG_RUN_ID: run_id,
                TAG_CREATED_AT: created_at,
                TAG_GATE_REPORT: report_tag,
                TAG_GATE_REPORT_TRUNCATED: str(report_tag != gate_report).lower(),
                TAG_ARTIFACT_URI: f"{source}/{MODEL_FILE_NAME}",
                _audit_key(1): json.dumps(creation.to_dict(), sort_keys=True),
            }
            tags = {key: _check_tag(key, value) for key, value in tags.items()}
            created = self.client.create_model_version(name, source, run_id=mlflow_run_id, tags=tags, description=text)
            version_number = str(created.version)
            self.client.set_terminated(mlflow_run_id, "FINISHED")

            # Two tasks racing on one candidate both passed the check above: the oldest version wins.
            winner = self.find_by_candidate_key(package_type, candidate_key)
            if winner is not None and str(winner.version) != version_number:
                self._discard(name, version_number, mlflow_run_id)
                return winner
            self._sync_champion_alias(package_type)
            return self.get(package_type, int(version_number))
        except BaseException as err:
            self._discard(name, version_number, mlflow_run_id)
            if not isinstance(err, Exception):
                raise
            if isinstance(err, RegistryError):
                raise
            raise RegistryError(
                f"registering {package_type} candidate {candidate_key} failed ({first_line(err)}); "
                "nothing was registered and the champion is unchanged; fix the cause and re-run"
            ) from err

    def _discard(self, name: str, version: str | None, mlflow_run_id: str | None) -> None:
        """Best-effort removal of a half-made registration: the version, its run and the run's files."""
        # Each step is suppressed on its own: cleanup must not hide the original error.
        if version is not None:
            with contextlib.suppress(Exception):
                self.client.delete_model_version(name, version)
        if mlflow_run_id is not None:
            with contextlib.suppress(Exception):
                artifact_uri = self.client.get_run(mlflow_run_id).info.artifact_uri
                self.client.delete_run(mlflow_run_id)
                _delete_local_artifacts(artifact_uri)
        with contextlib.suppress(Exception):
            self._sync_champion_alias(name.removeprefix(f"{self.model_name_prefix}-"))

    def _write_run_id(self, current: ModelVersion, run_id: str) -> None:
        if len(run_id) > MAX_IDENTITY:
            raise RegistryError(f"run_id is {len(run_id)} characters; keep it under {MAX_IDENTITY}")
        name, version = self.model_name(current.package_type), str(current.version)
        value = _check_tag(TAG_RUN_ID, run_id)
        self._call(
            f"record the run of {current.package_type} v{version}",
            lambda: self.client.set_model_version_tag(name, version, TAG_RUN_ID, value),
        )

    def _write_status(self, current: ModelVersion, event: AuditEvent) -> None:
        """Appends the audit tag, then sets the status tag; removes the audit tag if that fails."""
        name = self.model_name(current.package_type)
        version = str(current.version)
        mv = self._mlflow_version(current.package_type, current.version)
        used = [
            int(k.removeprefix(AUDIT_TAG_PREFIX))
            for k in (mv.tags or {})
            if k.startswith(AUDIT_TAG_PREFIX) and k.removeprefix(AUDIT_TAG_PREFIX).isdigit()
        ]
        key = _audit_key(max(used, default=0) + 1)
        clipped = AuditEvent(
            at=event.at,
            who=_clip(event.who, 200),
            from_status=event.from_status,
            to_status=event.to_status,
            reason=_clip(event.reason, MAX_REASON),
        )
        value = _check_tag(key, json.dumps(clipped.to_dict(), sort_keys=True))
        what = f"change {current.package_type} v{version} to {event.to_status}"
        self._call(what, lambda: self.client.set_model_version_tag(name, version, key, value))
        try:
            self.client.set_model_version_tag(name, version, TAG_STATUS, str(event.to_status))
        except Exception as err:
            with contextlib.suppress(Exception):
                self.client.delete_model_version_tag(name, version, key)
            raise RegistryError(f"failed to {what} ({first_line(err)}); the status is unchanged, retry") from err
        self._call(
            f"move the {CHAMPION_ALIAS} alias of {name}",
            lambda: self._sync_champion_alias(current.package_type),
        )


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI, or None for other stores and in-memory databases."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    # sqlite:////abs/file.db parses to path //abs/file.db and sqlite:///rel.db to /rel.db.
    return Path(unquote(parsed.path)[1:])


@contextlib.contextmanager
def _exclusive_lock(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock between processes (POSIX ``flock``; no lock where it is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: a laptop runs one task at a time anyway
        yield
        return
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _delete_local_artifacts(artifact_uri: str) -> None:
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
