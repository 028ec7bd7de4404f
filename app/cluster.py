"""Packwise on a Kubeflow Pipelines cluster: submit runs, keep the schedules, retry failed runs.

A thin layer over `kfp.Client` (or anything with the same methods: the tests use a recording client).
Every run gets its parameters from the configuration: the pipeline's `*_json` parameters are the config
sections, so a run is self-describing and a trigger file's overrides reach exactly the tasks they change.

- `submit`: compiles the pipeline for the cluster (images, resources, env references, retries) and
  creates a run in the configured experiment, as the configured service account.
- `apply_schedules`: makes the recurring runs match `cluster.schedules`. Each managed recurring run
  carries a fingerprint of its spec in its description; applying the same config twice creates nothing,
  a changed schedule is replaced (KFP cannot edit one), a schedule removed from the config is deleted.
- `retry`: KFP's RetryRun (`POST /apis/v2beta1/runs/{id}:retry`), which the SDK client does not wrap:
  a failed run resumes from its failed tasks, the succeeded ones are kept.

kfp is imported only inside the functions that need it (src/packwise never imports it at module level).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError, PackwiseError
from packwise.lineage import check_run_id

if TYPE_CHECKING:
    from packwise_components.images import ImageSet

PipelineKind = Literal["training", "inference"]
PIPELINES: tuple[PipelineKind, ...] = ("training", "inference")
SCHEDULE_MARK = "packwise schedule"  # description prefix of the recurring runs `apply_schedules` owns
RETRYABLE_STATES = {"FAILED", "CANCELED"}


class ClusterError(PackwiseError):
    """The cluster refused or does not have what was asked for."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field("", description="Run id; empty uses the KFP job id.")

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        try:
            return check_run_id(value, "value") if value else value
        except ConfigError as err:
            raise ValueError(str(err)) from None


class TrainingParams(_Params):
    """Run parameters of the training pipeline that are not configuration."""

    week: int = Field(ge=0, description="Label snapshot week (labels observed up to it); 0: the newest labelled week.")


class InferenceParams(_Params):
    """Run parameters of the inference pipeline that are not configuration."""

    mode: Literal["daily", "monthly"] = "daily"
    pinned_models: dict[str, int] = Field(default_factory=dict)


_PARAM_MODELS: dict[str, type[_Params]] = {"training": TrainingParams, "inference": InferenceParams}


def validate_params(pipeline: str, params: dict[str, Any], source: str = "params") -> dict[str, Any]:
    """The run parameters checked against the pipeline's; one-line ConfigError naming the bad key."""
    if pipeline not in _PARAM_MODELS:
        raise ConfigError(f"{source}: unknown pipeline {pipeline!r}; use training or inference")
    model = _PARAM_MODELS[pipeline]
    try:
        return model.model_validate(params).model_dump(exclude_defaults=False)
    except ValidationError as err:
        errors = err.errors()
        # a misspelt name explains a missing one: report it first
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = ".".join(str(p) for p in first["loc"]) or "params"
        if first["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise ConfigError(f"{source}: {pipeline} has no parameter {loc!r}; its parameters: {known}") from None
        if first["type"] == "missing":
            raise ConfigError(f"{source}: {pipeline} needs the parameter {loc!r}") from None
        raise ConfigError(f"{source}: {loc}: {first['msg'].removeprefix('Value error, ')}") from None


def pipeline_inputs(package: Path) -> list[str]:
    """Names of the parameters a compiled pipeline takes."""
    doc = next(iter(yaml.safe_load_all(package.read_text())))
    return list(doc.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


def run_arguments(package: Path, config: PackwiseConfig, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of the compiled pipeline: the run's own params, else the config's (`pipeline_arguments`)."""
    from packwise_pipelines.arguments import pipeline_arguments

    from_config = pipeline_arguments(config)
    args: dict[str, Any] = {}
    for name in pipeline_inputs(package):
        if name in params:
            args[name] = params[name]
        elif name in from_config:
            args[name] = from_config[name]
    return args


def compile_pipeline(pipeline: str, config: PackwiseConfig, out_dir: Path, images: ImageSet | None = None) -> Path:
    """Compiles one pipeline for the cluster into `out_dir/<pipeline>.yaml` (the one compile path)."""
    from packwise_pipelines.compile import compile_pipeline as compile_ir

    return compile_ir(pipeline, config, out_dir, images)


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """KFP API and connection failures as one-line ClusterErrors (the CLI prints them without a traceback)."""
    try:
        yield
    except PackwiseError:
        raise
    except Exception as err:
        from kfp_server_api.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if isinstance(err, ApiException):
            body = re.sub(r"\s+", " ", str(err.body or ""))[:200]
            detail = f"HTTP {err.status} {err.reason}: {body}"
        elif isinstance(err, HTTPError | OSError):
            detail = re.sub(r"\s+", " ", str(err))[:200]
        else:
            raise
        raise ClusterError(f"Kubeflow Pipelines refused to {what} ({detail}); check cluster.host") from None


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_run_name(pipeline: str, params: dict[str, Any]) -> str:
    detail = f"week-{params['week']}" if pipeline == "training" and "week" in params else params.get("mode", "")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return "-".join(p for p in (f"packwise-{pipeline}", str(detail), stamp) if p)


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    run_name: str
    pipeline: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ScheduleChange:
    name: str
    action: Literal["created", "unchanged", "replaced", "deleted", "disabled"]
    recurring_run_id: str | None = None


@dataclass
class Cluster:
    """Packwise's operations on one KFP deployment, through `client` (kfp.Client or a stand-in)."""

    client: Any
    config: PackwiseConfig
    images: ImageSet | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)
    _packages: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    # ---- pipelines -----------------------------------------------------------------------------------
    def package(self, pipeline: str, config: PackwiseConfig | None = None) -> Path:
        """The compiled pipeline for `config` (default: the cluster's), compiled once per distinct config."""
        config = config or self.config
        key = f"{pipeline}-{_fingerprint(config.model_dump(mode='json'))}"
        if key not in self._packages:
            if self._workdir is None:
                self._workdir = tempfile.TemporaryDirectory(prefix="packwise-kfp-")
            self._packages[key] = compile_pipeline(pipeline, config, Path(self._workdir.name) / key, self.images)
        return self._packages[key]

    def experiment_id(self) -> str:
        with api_errors(f"create or find the experiment {self.config.cluster.experiment!r}"):
            experiment = self.client.create_experiment(name=self.config.cluster.experiment)  # gets it if it exists
        return str(experiment.experiment_id)

    # ---- runs ----------------------------------------------------------------------------------------
    def submit(
        self,
        pipeline: str,
        params: dict[str, Any],
        config: PackwiseConfig | None = None,
        run_name: str | None = None,
    ) -> SubmittedRun:
        """Starts one run of `pipeline` with `params`; every other parameter comes from `config`."""
        config = config or self.config
        checked = validate_params(pipeline, params)
        package = self.package(pipeline, config)
        arguments = run_arguments(package, config, checked)
        name = run_name or default_run_name(pipeline, checked)
        with api_errors(f"start a {pipeline} run"):
            result = self.client.create_run_from_pipeline_package(
                pipeline_file=str(package),
                arguments=arguments,
                run_name=name,
                experiment_name=config.cluster.experiment,
                pipeline_root=config.cluster.pipeline_root,
                service_account=config.cluster.service_account,
            )
        return SubmittedRun(run_id=str(result.run_id), run_name=name, pipeline=pipeline, arguments=arguments)

    def find_run(self, run_name: str) -> str | None:
        """The id of the run named `run_name` in the experiment, if one exists."""
        flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": run_name}]})
        response = self.client.list_runs(experiment_id=self.experiment_id(), page_size=10, filter=flt)
        for run in getattr(response, "runs", None) or []:
            if run.display_name == run_name:
                return str(run.run_id)
        return None

    def retry(self, run_id: str) -> str:
        """Resumes a failed run from its failed tasks (KFP RetryRun); returns the state it had."""
        with api_errors(f"find run {run_id}"):
            run = self.client.get_run(run_id=run_id)
        state = str(getattr(run, "state", "") or "")
        if state not in RETRYABLE_STATES:
            raise ClusterError(
                f"run {run_id} is {state or 'in an unknown state'}; only a FAILED or CANCELED run can be retried"
            )
        # kfp.Client has no retry_run; its generated RunServiceApi does (POST /apis/v2beta1/runs/{id}:retry).
        with api_errors(f"retry run {run_id}"):
            self.client._run_api.run_service_retry_run(run_id=run_id)
        return state

    # ---- schedules -----------------------------------------------------------------------------------
    def list_schedules(self) -> list[Any]:
        """Every recurring run of the experiment (managed or not)."""
        experiment_id = self.experiment_id()
        found: list[Any] = []
        token = ""
        while True:
            page = self.client.list_recurring_runs(experiment_id=experiment_id, page_size=100, page_token=token)
            found += getattr(page, "recurring_runs", None) or []
            token = getattr(page, "next_page_token", None) or ""
            if not token:
                return found

    def _desired(self, name: str) -> tuple[dict[str, Any], str, Path]:
        schedule = self.config.cluster.schedules[name]
        checked = validate_params(schedule.pipeline, schedule.params, f"cluster.schedules.{name}.params")
        package = self.package(schedule.pipeline)
        arguments = run_arguments(package, self.config, checked)
        spec = {
            "pipeline": schedule.pipeline,
            "cron": schedule.cron,
            "enabled": schedule.enabled,
            "arguments": arguments,
            "service_account": self.config.cluster.service_account,
            "pipeline_root": self.config.cluster.pipeline_root,
            "pipeline_spec": _fingerprint(list(yaml.safe_load_all(package.read_text()))),
        }
        return arguments, f"{SCHEDULE_MARK} {name}; spec {_fingerprint(spec)}", package

    def apply_schedules(self) -> list[ScheduleChange]:
        """Makes the experiment's recurring runs match `cluster.schedules` (idempotent)."""
        experiment_id = self.experiment_id()
        existing: dict[str, list[Any]] = {}
        for run in self.list_schedules():
            if (run.description or "").startswith(SCHEDULE_MARK):
                existing.setdefault(run.display_name, []).append(run)
        changes: list[ScheduleChange] = []
        for name, schedule in self.config.cluster.schedules.items():
            arguments, description, package = self._desired(name)
            current = existing.pop(name, [])
            keep = next((r for r in current if r.description == description), None)
            for stale in current:
                if stale is not keep:
                    self.client.delete_recurring_run(recurring_run_id=stale.recurring_run_id)
            if keep is not None:
                changes.append(ScheduleChange(name, "unchanged", str(keep.recurring_run_id)))
                continue
            created = self.client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                description=description,
                cron_expression=schedule.cron,
                max_concurrency=1,
                no_catchup=True,  # a missed week is trained by the next run on every label so far
                params=arguments,
                pipeline_package_path=str(package),
                enabled=schedule.enabled,
                pipeline_root=self.config.cluster.pipeline_root,
                service_account=self.config.cluster.service_account,
            )
            action: Literal["replaced", "created"] = "replaced" if current else "created"
            changes.append(ScheduleChange(name, action, str(created.recurring_run_id)))
        for name, runs in existing.items():  # managed before, no longer configured
            for run in runs:
                self.client.delete_recurring_run(recurring_run_id=run.recurring_run_id)
            changes.append(ScheduleChange(name, "deleted", None))
        return changes


KFP_PORT_FORWARD = "kubectl port-forward -n kubeflow svc/ml-pipeline 8888:8888"
"""The port-forward the README's kind walkthrough uses for the KFP API (cluster.host http://localhost:8888)."""


def kfp_endpoint(config: PackwiseConfig) -> str | None:
    """The KFP API URL a client would use: cluster.host, else kfp's KF_PIPELINES_ENDPOINT; None: kube config."""
    import os

    host = config.cluster.host or os.environ.get("KF_PIPELINES_ENDPOINT") or None
    if host and not host.startswith(("http://", "https://")):
        host = "https://" + host  # what kfp.Client assumes
    return host.rstrip("/") if host else None


def _kube_config_exists() -> bool:
    import os

    paths = os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    return any(Path(p).is_file() for p in paths.split(os.pathsep) if p)


def check_reachable(config: PackwiseConfig, timeout_s: float = 5.0) -> None:
    """Fails with one line naming the host and what to check when nothing answers at the KFP endpoint.

    Only a TCP connection is tried (kfp.Client's own health check follows); it runs before anything is
    compiled or uploaded. Without an endpoint, kfp finds the API through the in-cluster service or the kube
    config; with neither there is nothing to try.

    Raises:
        ClusterError: No endpoint at all, an unknown host name, a refused connection or no answer in time.
    """
    import os
    import socket
    from urllib.parse import urlsplit

    host = kfp_endpoint(config)
    fix = f"set cluster.host (e.g. --set cluster.host=http://localhost:8888 after `{KFP_PORT_FORWARD}`)"
    if host is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST") or _kube_config_exists():
            return  # kfp.Client finds the API itself (in-cluster DNS or the kube config's proxy)
        raise ClusterError(
            f"no Kubeflow Pipelines endpoint: cluster.host is unset, KF_PIPELINES_ENDPOINT is empty and there is no "
            f"kube config; {fix}"
        )
    parts = urlsplit(host)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ClusterError(f"cluster.host {host!r} has an invalid port; {fix}") from None
    if not parts.hostname:
        raise ClusterError(f"cluster.host {host!r} names no host; {fix}")
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return
    except socket.gaierror:
        why = f"unknown host name {parts.hostname!r}"
    except TimeoutError:
        why = f"no answer from {parts.hostname}:{port} in {timeout_s:g}s"
    except ConnectionRefusedError:
        why = f"connection to {parts.hostname}:{port} refused"
    except OSError as err:
        why = f"{parts.hostname}:{port}: {err.strerror or err}"
    raise ClusterError(
        f"cannot reach Kubeflow Pipelines at {host} ({why}); check that the KFP API is up and that cluster.host "
        f"points at it (a port-forward: `{KFP_PORT_FORWARD}`, then --set cluster.host=http://localhost:8888)"
    )


def connect(config: PackwiseConfig, images: ImageSet | None = None) -> Cluster:
    """A Cluster on the KFP API at `cluster.host` (or the KF_PIPELINES_ENDPOINT kfp reads).

    The endpoint is checked first (`check_reachable`). kfp.Client prints "Failed to load kube config." when it
    looks for one and finds none: that print is swallowed, the error that follows says what matters.
    """
    import io
    import warnings

    check_reachable(config)
    import kfp

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)  # "this client only works with KFP v2.0.0-beta.2 and later"
        try:
            client = kfp.Client(host=config.cluster.host, namespace=config.cluster.namespace)
        except Exception as err:  # kfp raises plain exceptions for unreachable hosts and bad kube contexts
            where = kfp_endpoint(config) or "the kube config's cluster"
            first = re.sub(r"\s+", " ", str(err)).strip()
            raise ClusterError(
                f"cannot reach Kubeflow Pipelines at {where} ({first}); check that the KFP API is up and that "
                "cluster.host points at it"
            ) from None
    return Cluster(client=client, config=config, images=images)
