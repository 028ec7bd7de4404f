"""The MLflow runs that show training: one parent per pipeline run, one nested run per package type.

The parent is the run kfp's MLflow integration made for the pipeline run when it is on (its id is in
``KFP_MLFLOW_PARENT_RUN_ID``), else the run of ``packwise-models`` tagged ``kfp.pipeline_run_id`` with
the pipeline run id (the tag kfp's integration sets), created on first use. A candidate's run holds the
model params, feature lists, split, week, fingerprint and label counts as params; candidate and re-scored
champion metrics; the gate report (also as the run's description), ROC curve and confusion matrix as
artifacts; the snapshot as an ``mlflow.data`` dataset input.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from packwise.registry.mlflow_store import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    GATE_REPORT_FILE,
    KFP_PARENT_RUN_ENV,
    KFP_RUN_TAG,
    MAX_PARAM,
    MAX_REPORT_NOTE,
    PARAM_CREATED_AT,
    PARAM_MODEL_TYPE,
    PARENT_RUN_ID_TAG,
    RUN_NOTE_TAG,
    TAG_CANDIDATE_KEY,
    TAG_FINGERPRINT,
    TAG_PACKAGE_TYPE,
    TAG_ROLE,
    TAG_STATUS,
    TAG_WEEK,
    TRUNCATION_MARK,
    clip,
    delete_local_artifacts,
)
from packwise.registry.records import Candidate, TrainingRecord


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    """The id of experiment ``name`` (created, or restored if deleted), tagged for model training.

    ``artifact_root`` None creates it at the store's default artifact location (a tracking server's own).
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = str(
                client.create_experiment(
                    name, artifact_location=artifact_root, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            )
        except MlflowException as err:  # created concurrently by another task
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise err from None
        else:
            return experiment_id
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return str(experiment.experiment_id)


def ensure_registered_model(client: MlflowClient, name: str, package_type: str) -> None:
    """Creates the registered model of a package type unless it exists (also when created concurrently)."""
    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(
                name,
                tags={TAG_PACKAGE_TYPE: package_type},
                description=f"Packwise suitability classifier for package type {package_type}.",
            )
        except MlflowException as exists:
            if exists.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def parent_run(client: MlflowClient, experiment_id: str, candidate: Candidate) -> str:
    """The id of the pipeline run's parent run (kfp's, found by tag, or created FINISHED here)."""
    from_kfp = os.environ.get(KFP_PARENT_RUN_ENV, "").strip()
    if from_kfp:
        return from_kfp
    training = candidate.training or TrainingRecord()
    pipeline_run = training.pipeline_run_id or candidate.run_id
    if pipeline_run:
        key, value, name = KFP_RUN_TAG, pipeline_run, f"training {pipeline_run}"
    else:  # no run id (a cached register task): one parent per training week and snapshot
        week = "" if training.week is None else str(training.week)
        key, value, name = TAG_FINGERPRINT, candidate.data_fingerprint, f"training week {week or '?'}"
    found = _pipeline_runs(client, experiment_id, key, value)
    if found:
        return found[0]
    tags = {key: value, TAG_ROLE: "pipeline"}
    if training.week is not None:
        tags[TAG_WEEK] = str(training.week)
    run = client.create_run(experiment_id, run_name=clip(name, 250), tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")
    # The package types' register tasks run side by side: two may each have found no parent and created one.
    # Every task keeps the oldest, so all candidates of the pipeline run share it; a later one deletes its own.
    oldest = _pipeline_runs(client, experiment_id, key, value)[0]
    if oldest != run.info.run_id:
        delete_run(client, run.info.run_id)
    return oldest


def _pipeline_runs(client: MlflowClient, experiment_id: str, key: str, value: str) -> list[str]:
    """The ids of the parent runs tagged ``key`` = ``value``, oldest first (ties broken by id)."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{key}` = '{value}' and tags.`{TAG_ROLE}` = 'pipeline'",
        max_results=50,
    )
    ordered = sorted(found, key=lambda r: (r.info.start_time or 0, r.info.run_id))
    return [str(r.info.run_id) for r in ordered]


def run_name(candidate: Candidate) -> str:
    """A candidate run's name: its package type and week, e.g. ``mailer week 12`` (else its key)."""
    week = candidate.training.week if candidate.training is not None else None
    return (
        f"{candidate.package_type} week {week}"
        if week is not None
        else f"{candidate.package_type} {candidate.candidate_key}"
    )


def candidate_run_tags(candidate: Candidate, parent_id: str, status: str) -> dict[str, str]:
    """The few short tags of a candidate's run; the rest goes to params, metrics and artifacts."""
    training = candidate.training or TrainingRecord()
    tags = {
        PARENT_RUN_ID_TAG: parent_id,
        TAG_ROLE: "candidate",
        TAG_PACKAGE_TYPE: candidate.package_type,
        TAG_FINGERPRINT: candidate.data_fingerprint,
        TAG_STATUS: status,
        TAG_CANDIDATE_KEY: candidate.candidate_key,
    }
    if training.week is not None:
        tags[TAG_WEEK] = str(training.week)
    if training.pipeline_run_id:
        tags[KFP_RUN_TAG] = training.pipeline_run_id
    report = candidate.gate_report
    if len(report) > MAX_REPORT_NOTE:
        report = report[: MAX_REPORT_NOTE - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    tags[RUN_NOTE_TAG] = report
    return tags


def _params(candidate: Candidate, created_at: str, feature_lists: Mapping[str, list[str]]) -> dict[str, str]:
    training = candidate.training or TrainingRecord()
    params: dict[str, Any] = {
        PARAM_MODEL_TYPE: candidate.model_type,
        PARAM_CREATED_AT: created_at,
        "package_type": candidate.package_type,
        "data_fingerprint": candidate.data_fingerprint,
        "candidate_key": candidate.candidate_key,
    }
    if training.week is not None:
        params["week"] = training.week
    params.update({f"model.{k}": v for k, v in sorted(training.model_params.items())})
    params.update({f"split.{k}": v for k, v in sorted(training.split.items())})
    params.update({f"features.{k}": ",".join(v) for k, v in feature_lists.items()})
    params.update({f"labels.{k}": v for k, v in sorted(training.label_counts.items())})
    return {k: clip(str(v), MAX_PARAM) for k, v in params.items()}


def _metrics(candidate: Candidate) -> dict[str, float]:
    metrics = {str(k): float(v) for k, v in candidate.metrics.items()}
    training = candidate.training or TrainingRecord()
    for prefix, scored in (("", training.candidate_metrics), ("champion_", training.champion_metrics)):
        for name in ("auc", "pr_auc", "log_loss"):
            if scored is not None and name in scored:
                metrics.setdefault(f"{prefix}{name}", float(scored[name]))
    count = float(candidate.label_stats.get("count", 0))
    rate = float(candidate.label_stats.get("positive_rate", 0.0))
    metrics["label_count"] = count
    metrics["label_positive_rate"] = rate  # the class balance of the training labels
    if training.label_counts:
        metrics["label_positives"] = float(training.label_counts.get("positive", 0))
        metrics["label_negatives"] = float(training.label_counts.get("negative", 0))
    if training.champion_version is not None:
        metrics["champion_version"] = float(training.champion_version)
    return metrics


def feature_lists(model_file: Path) -> dict[str, list[str]]:
    """The feature recipe's column lists of a Packwise model file; empty when it carries none."""
    from packwise.artifact import load_model_artifact

    try:
        spec = load_model_artifact(model_file).spec
    except Exception:  # a model trained outside Packwise (or a test's stand-in): no recipe to show
        return {}
    lists = {
        "numeric": list(spec.numeric),
        "boolean": list(spec.boolean),
        "categorical": list(spec.categorical),
        "derived": list(spec.derived),
        "input_columns": spec.input_columns,
    }
    if spec.text_column:
        lists["text"] = [spec.text_column]
    return {k: v for k, v in lists.items() if v}


def log_candidate_run(
    client: MlflowClient, run_id: str, candidate: Candidate, created_at: str, features: Mapping[str, list[str]]
) -> None:
    """Logs what the candidate's run shows: params, metrics, dataset input and report/plot artifacts."""
    now_ms = int(time.time() * 1000)
    params = [Param(k, v) for k, v in _params(candidate, created_at, features).items()]
    metrics = [Metric(k, v, now_ms, 0) for k, v in _metrics(candidate).items()]
    for start in range(0, max(len(params), len(metrics)), 100):  # log_batch takes at most 100 params
        client.log_batch(run_id, metrics=metrics[start : start + 100], params=params[start : start + 100])
    log_dataset(client, run_id, candidate)
    with tempfile.TemporaryDirectory(prefix="packwise-run-") as tmp:
        report = Path(tmp) / GATE_REPORT_FILE
        report.write_text(candidate.gate_report, encoding="utf-8")
        client.log_artifact(run_id, str(report))
        training = candidate.training
        if training is not None and training.candidate_metrics is not None:
            _log_plots(client, run_id, training, Path(tmp))


def log_dataset(client: MlflowClient, run_id: str, candidate: Candidate) -> None:
    """Logs the label snapshot as the run's training dataset: its location, named by week, digest = fingerprint."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    training = candidate.training or TrainingRecord()
    if not training.snapshot_uri and not candidate.data_fingerprint:
        return
    uri = training.snapshot_uri or f"packwise-snapshot:{candidate.data_fingerprint}"
    source: Any
    try:
        source = resolve_dataset_source(uri)  # file://, s3://, local paths, ...
    except Exception:  # no source type for this scheme: keep the location as a plain reference
        source = HTTPDatasetSource(uri)
    week = "" if training.week is None else f"-week-{training.week}"
    dataset = MetaDataset(  # type: ignore[abstract]  # concrete at runtime; the stub marks profile
        source=source, name=f"label-snapshot{week}", digest=candidate.data_fingerprint[:36] or None
    )
    entity = dataset._to_mlflow_entity()
    inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])]
    for attempt in range(DATASET_ATTEMPTS):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            # The package types' register tasks run side by side and log the same snapshot. MLflow's store
            # looks the dataset up and then inserts it, so of two first loggers one hits the unique key
            # (experiment, name, digest). Its transaction rolled back; the dataset now exists and the next
            # call links this run to it.
            if attempt + 1 == DATASET_ATTEMPTS or not _is_unique_conflict(err):
                raise
            time.sleep(0.2 * (attempt + 1))


DATASET_ATTEMPTS = 4
UNIQUE_CONFLICT_MARKERS = ("duplicate key value", "unique constraint", "integrityerror", "already exists")


def _is_unique_conflict(err: MlflowException) -> bool:
    """Whether the tracking store refused a write for a row another writer inserted first."""
    text = str(err).lower()
    return any(marker in text for marker in UNIQUE_CONFLICT_MARKERS)


def _log_plots(client: MlflowClient, run_id: str, training: TrainingRecord, tmp: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = training.candidate_metrics or {}
    roc = scored.get("roc_curve")
    if roc:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(roc["fpr"], roc["tpr"], label=f"candidate (AUC {float(scored.get('auc', 0.0)):.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (validation)")
        ax.legend(loc="lower right")
        client.log_figure(run_id, fig, "roc_curve.png")
        plt.close(fig)
        (tmp / "roc_curve.json").write_text(json.dumps(roc), encoding="utf-8")
        client.log_artifact(run_id, str(tmp / "roc_curve.json"))
    matrix = scored.get("confusion_matrix")
    if matrix:
        fig, ax = plt.subplots(figsize=(3.5, 3.5))
        ax.imshow(matrix, cmap="Blues")
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center")
        ax.set_xticks([0, 1], ["unsuitable", "suitable"])
        ax.set_yticks([0, 1], ["unsuitable", "suitable"])
        ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion @ {float(scored.get('threshold', 0.5)):.2f}")
        client.log_figure(run_id, fig, "confusion_matrix.png")
        plt.close(fig)
        (tmp / "confusion_matrix.json").write_text(json.dumps({"tn_fp_fn_tp": matrix}), encoding="utf-8")
        client.log_artifact(run_id, str(tmp / "confusion_matrix.json"))


def terminate_if_running(client: MlflowClient, run_id: str, status: str = "FINISHED") -> bool:
    """Ends a run left RUNNING (by a crash); returns whether it had to."""
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, status)
        return True
    return False


def fail_orphan_runs(client: MlflowClient, experiment_id: str, package_type: str, candidate_key: str) -> None:
    """Marks FAILED the runs of a candidate that a crash left RUNNING before their version existed."""
    orphans = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_CANDIDATE_KEY}` = '{candidate_key}' and "
        f"tags.`{TAG_PACKAGE_TYPE}` = '{package_type}' and attributes.status = 'RUNNING'",
    )
    for run in orphans:
        client.set_tag(run.info.run_id, "packwise.note", "interrupted before its version was created")
        client.set_terminated(run.info.run_id, "FAILED")


def delete_run(client: MlflowClient, run_id: str) -> None:
    """Deletes a run and, on a local file system, its artifact files."""
    artifact_uri = client.get_run(run_id).info.artifact_uri
    client.delete_run(run_id)
    delete_local_artifacts(artifact_uri)


def run_tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    """The tags of a run, or an empty mapping when it is gone."""
    try:
        return dict(client.get_run(run_id).data.tags)
    except MlflowException:
        return {}


def set_run_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Sets several tags of a run in one call."""
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
