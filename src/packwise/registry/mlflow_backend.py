"""MLflow model registry backend: the local default (sqlite store, no server) and the mirror of SageMaker.

One truth: a version's audit trail (tags ``packwise.audit.NNNN`` of its run, appended, never rewritten)
decides its status. MLflow's views of it, the version tag ``packwise.status``, the run tag of the same
name, the version description (the one-line decision) and the ``champion`` alias (newest Approved), are
written together after every change. A crash between those writes is finished by re-running the step
(``register`` completes its own version), and ``packwise registry verify --repair`` puts back anything a
person changed in the UI, audited (see ``packwise.registry.verify``). ``champion()``, what inference
uses, refuses a registry in drift. Store layout: ``packwise.registry.mlflow_store``.

The client is built with explicit tracking and registry URIs; nothing global (``mlflow.set_*``) is touched.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from packwise.config import PACKAGE_TYPE_NAME
from packwise.errors import RegistryError, first_line
from packwise.faults import maybe_fail
from packwise.registry import (
    AuditEvent,
    Candidate,
    Drift,
    ModelVersion,
    RegistryBackend,
    candidate_model_file,
    check_candidate,
    not_found,
    utc_now,
    validate_package_type,
)
from packwise.registry.mlflow_read import download_model_file, read_runs, to_version
from packwise.registry.mlflow_runs import (
    candidate_run_tags,
    delete_run,
    ensure_experiment,
    ensure_registered_model,
    fail_orphan_runs,
    feature_lists,
    log_candidate_run,
    parent_run,
    run_name,
    run_tags,
    terminate_if_running,
)
from packwise.registry.mlflow_store import (
    CHAMPION_ALIAS,
    EXPERIMENT_NAME,
    GATE_REPORT_FILE,
    MAX_IDENTITY,
    MAX_REASON,
    MAX_TAG_VALUE,
    MODEL_ARTIFACT_DIR,
    MODEL_FILE_NAME,
    PARAM_LABEL_STATS,
    TAG_CANDIDATE_KEY,
    TAG_FINGERPRINT,
    TAG_PACKAGE_TYPE,
    TAG_RUN_ID,
    TAG_STATUS,
    TAG_WEEK,
    audit_indices,
    audit_key,
    check_tag,
    clip,
    decision_line,
    open_client,
)

__all__ = ["CHAMPION_ALIAS", "GATE_REPORT_FILE", "MAX_TAG_VALUE", "TAG_STATUS", "MlflowRegistry"]

_PAGE = 1000
T = TypeVar("T")


def _crash_point(point: str, package_type: str) -> None:
    """A named point of ``register`` where a drill (PACKWISE_FAIL_TASK=register.<point>) can fail it."""
    maybe_fail(f"register.{point}", package_type)


class MlflowRegistry(RegistryBackend):
    """The ``Registry`` on an MLflow tracking store and model registry.

    Args:
        tracking_uri: MLflow tracking URI (also used as the registry URI), e.g. ``sqlite:////abs/mlflow.db``.
        artifact_root: Artifact location of the experiment, e.g. ``file:///abs/mlartifacts``; None on a
            tracking server leaves it to the server (its ``--artifacts-destination``, proxied).
        model_name_prefix: Registered models are named ``{prefix}-{package_type}``.
        experiment_name: The experiment holding the training runs.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        artifact_root: str | None,
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
        """The MLflow client, created on first use with its store initialised (see ``open_client``)."""
        if self._client_instance is None:
            self._client_instance = open_client(self.tracking_uri)
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

    def registered_package_types(self) -> list[str]:
        """The package types with a registered model under this prefix."""
        types: list[str] = []
        token: str | None = None
        head = f"{self.model_name_prefix}-"
        while True:
            page = self._call(
                "list registered models",
                functools.partial(self.client.search_registered_models, max_results=_PAGE, page_token=token),
            )
            for model in page:
                rest = model.name.removeprefix(head)
                if model.name.startswith(head) and PACKAGE_TYPE_NAME.match(rest):
                    types.append(rest)
            token = page.token
            if not token:
                return types

    def _mlflow_version(self, package_type: str, version: int) -> MlflowModelVersion:
        validate_package_type(package_type)
        try:
            return self.client.get_model_version(self.model_name(package_type), str(version))
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise not_found(package_type, version) from None
            raise RegistryError(
                f"MLflow registry at {self.tracking_uri} failed to read {package_type} v{version} "
                f"({first_line(err)}); check registry.tracking_uri"
            ) from err

    def mlflow_versions(self, package_type: str) -> list[tuple[MlflowModelVersion, ModelVersion]]:
        """The MLflow versions of a package type written by packwise, each with what it says."""
        name = self.model_name(package_type)
        found = self._call(f"list versions of {name}", lambda: list(self._search_versions(name)))
        runs = self._call(f"read the runs of {name}", lambda: read_runs(self.client, [mv.run_id or "" for mv in found]))
        out = []
        for mv in found:
            version = to_version(mv, runs.get(mv.run_id or ""))
            if version is not None:
                out.append((mv, version))
        return out

    def alias_version(self, package_type: str) -> int | None:
        """The version the ``champion`` alias names, or None."""
        try:
            aliases = self.client.get_registered_model(self.model_name(package_type)).aliases
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return int(aliases[CHAMPION_ALIAS]) if CHAMPION_ALIAS in aliases else None

    def sync_champion_alias(self, package_type: str) -> None:
        """Points the ``champion`` alias at the newest Approved version, or removes it when there is none."""
        name = self.model_name(package_type)
        champion = self.newest_approved(package_type)
        if champion is not None:
            self.client.set_registered_model_alias(name, CHAMPION_ALIAS, str(champion.version))
            return
        try:
            self.client.delete_registered_model_alias(name, CHAMPION_ALIAS)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def project_status(self, mv: MlflowModelVersion, version: ModelVersion) -> None:
        """Writes MLflow's views of a version's status from its audit trail: tags and description."""
        name, number, status = self.model_name(version.package_type), str(version.version), str(version.status)
        if (mv.tags or {}).get(TAG_STATUS) != status:
            self.client.set_model_version_tag(name, number, TAG_STATUS, status)
        if mv.run_id and run_tags(self.client, mv.run_id).get(TAG_STATUS) != status:
            self.client.set_tag(mv.run_id, TAG_STATUS, status)
        description = decision_line(status, version.reason)
        if (mv.description or "") != description:
            self.client.update_model_version(name, number, description=description)

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, package_type: str, version: int) -> ModelVersion:
        """One version of a package type.

        Raises:
            ModelNotFoundError: It does not exist (or was not registered by packwise).
        """
        mv = self._mlflow_version(package_type, version)
        runs = self._call(
            f"read the run of {package_type} v{version}", lambda: read_runs(self.client, [mv.run_id or ""])
        )
        found = to_version(mv, runs.get(mv.run_id or ""))
        if found is None:
            raise not_found(package_type, version)
        return found

    def list_versions(self, package_type: str | None = None) -> list[ModelVersion]:
        """Versions of one package type (by version, newest first) or of all (by creation, newest first)."""
        if package_type is not None:
            validate_package_type(package_type)
            types = [package_type]
        else:
            types = self.registered_package_types()
        out = [version for name in types for _, version in self.mlflow_versions(name)]
        out.sort(key=lambda v: (v.created_at, v.package_type, v.version), reverse=True)
        if package_type is not None:
            out.sort(key=lambda v: v.version, reverse=True)
        return out

    def champion(self, package_type: str) -> ModelVersion | None:
        """The newest Approved version, once MLflow agrees with the audit trail (what inference uses).

        Raises:
            RegistryError: The registry is in drift (an alias moved or a status edited in the UI, or a
                change left half-written); the message names the command that repairs it.
        """
        from packwise.registry.verify import find_drift

        drift = find_drift(self, package_type)
        if drift:
            more = f" (and {len(drift) - 1} more)" if len(drift) > 1 else ""
            raise RegistryError(
                f"the MLflow registry is in drift: {drift[0].line()}{more}; run `packwise registry verify` to see "
                f"it and `packwise registry verify --repair` to put MLflow back in line with the audit trail"
            )
        return self.newest_approved(package_type)

    def verify(self, package_type: str | None = None) -> list[Drift]:
        """Every drift between MLflow and the audit trail (see ``packwise.registry.verify.find_drift``)."""
        from packwise.registry.verify import find_drift

        return find_drift(self, package_type)

    def repair(self, *, who: str, package_type: str | None = None) -> list[Drift]:
        """Repairs every drift, each audited; returns what was repaired."""
        from packwise.registry.verify import repair_drift

        return repair_drift(self, who=who, package_type=package_type)

    def download_model(self, package_type: str, version: int, dest_dir: Path) -> Path:
        """Copies a version's ``model.tar.gz`` (the SageMaker-layout file) to ``dest_dir/model.tar.gz``.

        Raises:
            ModelNotFoundError: The version does not exist.
            RegistryError: The artifact cannot be read.
        """
        mv = self._mlflow_version(package_type, version)
        if to_version(mv, None) is None or not mv.run_id:
            raise not_found(package_type, version)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / MODEL_FILE_NAME
        with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
            try:
                local = download_model_file(self.client, mv.run_id, tmp)
            except (MlflowException, OSError) as err:
                raise RegistryError(
                    f"cannot download {package_type} v{version} model file ({first_line(err)}); "
                    "check that registry.artifact_root is readable from here"
                ) from err
            shutil.move(local, target)
        return target

    # -- writes ---------------------------------------------------------------------------------------

    def register(self, candidate: Candidate) -> ModelVersion:
        """Registers a candidate as a new version (an MLflow Model), or completes the one of its key.

        A failure raises and removes what was made; a crash (no cleanup ran) is finished by calling this
        again: the version of ``candidate_key``, if it was created, is completed (its run ended, its
        status views and the ``champion`` alias written from the audit trail), and a run the crash left
        RUNNING without a version is marked FAILED.

        Args:
            candidate: The model and what its version records.

        Returns:
            The registered (or already registered) version.

        Raises:
            RegistryError: Invalid input, or the store failed (nothing was registered).
        """
        c = candidate
        status, reason = check_candidate(c)
        text = clip(reason, MAX_REASON)
        existing = self.find_by_candidate_key(c.package_type, c.candidate_key)
        if existing is not None:
            return self._complete(existing)
        model_file = candidate_model_file(c)
        identity = {
            "candidate_key": c.candidate_key,
            "data_fingerprint": c.data_fingerprint,
            "model_type": c.model_type,
            "run_id": c.run_id,
        }
        for field_name, value in identity.items():
            if len(value) > MAX_IDENTITY:
                raise RegistryError(f"{field_name} is {len(value)} characters; keep it under {MAX_IDENTITY}")

        name = self.model_name(c.package_type)
        created_at = utc_now()
        creation = AuditEvent(at=created_at, who=c.who or "unknown", from_status=None, to_status=status, reason=text)
        experiment_id = self._call(
            "prepare the experiment", lambda: ensure_experiment(self.client, self.experiment_name, self.artifact_root)
        )
        self._call(
            f"create the registered model {name}", lambda: ensure_registered_model(self.client, name, c.package_type)
        )
        self._call(
            "end runs a crash left running",
            lambda: fail_orphan_runs(self.client, experiment_id, c.package_type, c.candidate_key),
        )
        parent_id = self._call("find the pipeline run", lambda: parent_run(self.client, experiment_id, c))

        mlflow_run_id: str | None = None
        version_number: str | None = None
        try:
            tags = candidate_run_tags(c, parent_id, str(status))
            tags[audit_key(1)] = check_tag(audit_key(1), creation.model_dump_json())
            if c.run_id:
                tags[TAG_RUN_ID] = c.run_id
            run = self.client.create_run(experiment_id, run_name=clip(run_name(c), 250), tags=tags)
            mlflow_run_id = run.info.run_id
            _crash_point("after_create_run", c.package_type)
            log_candidate_run(self.client, mlflow_run_id, c, created_at, feature_lists(model_file))
            self.client.log_param(mlflow_run_id, PARAM_LABEL_STATS, json.dumps(dict(c.label_stats), sort_keys=True))
            with tempfile.TemporaryDirectory(prefix="packwise-register-") as tmp:
                from packwise.registry.mlflow_model import save_mlflow_model

                example = c.training.input_example if c.training is not None else None
                model_dir = save_mlflow_model(model_file, Path(tmp) / MODEL_ARTIFACT_DIR, example)
                self.client.log_artifacts(mlflow_run_id, str(model_dir), MODEL_ARTIFACT_DIR)
            version_tags = {
                TAG_STATUS: str(status),
                TAG_PACKAGE_TYPE: c.package_type,
                TAG_FINGERPRINT: c.data_fingerprint,
                TAG_CANDIDATE_KEY: c.candidate_key,
            }
            if c.training is not None and c.training.week is not None:
                version_tags[TAG_WEEK] = str(c.training.week)
            created = self.client.create_model_version(
                name,
                f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}",
                run_id=mlflow_run_id,
                tags={k: check_tag(k, v) for k, v in version_tags.items()},
                description=decision_line(str(status), text),
            )
            version_number = str(created.version)
            _crash_point("after_create_model_version", c.package_type)

            # Two tasks racing on one candidate both passed the check above: the oldest version wins.
            winner = self.find_by_candidate_key(c.package_type, c.candidate_key)
            if winner is not None and str(winner.version) != version_number:
                self._discard(name, version_number, mlflow_run_id)
                return self._complete(winner)
            self.sync_champion_alias(c.package_type)
            _crash_point("after_alias", c.package_type)
            self.client.set_terminated(mlflow_run_id, "FINISHED")
            return self.get(c.package_type, int(version_number))
        except BaseException as err:
            self._discard(name, version_number, mlflow_run_id)
            if not isinstance(err, Exception):
                raise
            if isinstance(err, RegistryError):
                raise
            raise RegistryError(
                f"registering {c.package_type} candidate {c.candidate_key} failed ({first_line(err)}); "
                "nothing was registered and the champion is unchanged; fix the cause and re-run"
            ) from err

    def _complete(self, version: ModelVersion) -> ModelVersion:
        """Finishes a registration a crash interrupted: run ended, status views and alias written."""
        mv = self._mlflow_version(version.package_type, version.version)

        def finish() -> None:
            if mv.run_id:
                terminate_if_running(self.client, mv.run_id)
            self.project_status(mv, version)
            self.sync_champion_alias(version.package_type)

        self._call(f"complete {version.package_type} v{version.version}", finish)
        return self.get(version.package_type, version.version)

    def _discard(self, name: str, version: str | None, mlflow_run_id: str | None) -> None:
        """Best-effort removal of a half-made registration: the version, its run and the run's files."""
        # Each step is suppressed on its own: cleanup must not hide the original error.
        if version is not None:
            with contextlib.suppress(Exception):
                self.client.delete_model_version(name, version)
        if mlflow_run_id is not None:
            with contextlib.suppress(Exception):
                delete_run(self.client, mlflow_run_id)
        with contextlib.suppress(Exception):
            self.sync_champion_alias(name.removeprefix(f"{self.model_name_prefix}-"))

    def _write_run_id(self, current: ModelVersion, run_id: str) -> None:
        if len(run_id) > MAX_IDENTITY:
            raise RegistryError(f"run_id is {len(run_id)} characters; keep it under {MAX_IDENTITY}")
        mv = self._mlflow_version(current.package_type, current.version)
        value = check_tag(TAG_RUN_ID, run_id)
        what = f"record the run of {current.package_type} v{current.version}"
        if not mv.run_id:
            name = self.model_name(current.package_type)
            self._call(what, lambda: self.client.set_model_version_tag(name, str(current.version), TAG_RUN_ID, value))
            return
        run_id_of_version = mv.run_id
        self._call(what, lambda: self.client.set_tag(run_id_of_version, TAG_RUN_ID, value))

    def append_audit(self, mv: MlflowModelVersion, event: AuditEvent) -> str:
        """Appends ``event`` to the version's audit trail (a new tag of its run); returns the tag key."""
        if not mv.run_id:
            raise RegistryError(f"{mv.name} v{mv.version} has no run to hold its audit trail; re-register it")
        used = audit_indices(mv.tags or {}) + audit_indices(run_tags(self.client, mv.run_id))
        key = audit_key(max(used, default=0) + 1)
        clipped = event.model_copy(update={"who": clip(event.who, 200), "reason": clip(event.reason, MAX_REASON)})
        value = check_tag(key, clipped.model_dump_json())
        run_id = mv.run_id
        self._call(
            f"append to the audit trail of {mv.name} v{mv.version}", lambda: self.client.set_tag(run_id, key, value)
        )
        return key

    def _write_status(self, current: ModelVersion, event: AuditEvent) -> None:
        """Appends the audit event, then writes the status tags, the description and the alias.

        If the version tag cannot be written, the event is removed again (the status is unchanged). A
        failure after that leaves the change made and MLflow's views partly stale: ``champion()`` then
        reports the drift and ``packwise registry verify --repair`` finishes the writes.
        """
        mv = self._mlflow_version(current.package_type, current.version)
        key = self.append_audit(mv, event)
        name, version = self.model_name(current.package_type), str(current.version)
        what = f"change {current.package_type} v{version} to {event.to_status}"
        try:
            self.client.set_model_version_tag(name, version, TAG_STATUS, str(event.to_status))
        except Exception as err:
            if mv.run_id:
                with contextlib.suppress(Exception):
                    self.client.delete_tag(mv.run_id, key)
            raise RegistryError(f"failed to {what} ({first_line(err)}); the status is unchanged, retry") from err
        updated = self._mlflow_version(current.package_type, current.version)

        def project() -> None:
            self.project_status(updated, self.get(current.package_type, current.version))
            self.sync_champion_alias(current.package_type)

        self._call(f"{what} in the run, description and {CHAMPION_ALIAS} alias", project)
