"""Reading a registered version back from MLflow: its version tags plus its run's tags, params and metrics.

Versions registered before each version was an MLflow Model kept everything in version tags; they are read
from those tags (``LEGACY_TAG_*``), so an old store stays readable without a migration.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from mlflow.entities import ViewType
from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
from mlflow.tracking import MlflowClient

from packwise.registry.mlflow_store import (
    LEGACY_MODEL_FILE_PATH,
    LEGACY_TAG_ARTIFACT_URI,
    LEGACY_TAG_CREATED_AT,
    LEGACY_TAG_GATE_REPORT,
    LEGACY_TAG_LABEL_STATS,
    LEGACY_TAG_METRICS,
    LEGACY_TAG_MODEL_TYPE,
    MODEL_ARTIFACT_DIR,
    MODEL_FILE_NAME,
    MODEL_FILE_PATH,
    PARAM_CREATED_AT,
    PARAM_LABEL_STATS,
    PARAM_MODEL_TYPE,
    RUN_NOTE_TAG,
    TAG_CANDIDATE_KEY,
    TAG_FINGERPRINT,
    TAG_PACKAGE_TYPE,
    TAG_RUN_ID,
    TAG_STATUS,
    audit_events,
)
from packwise.registry.records import ModelVersion, Status

_CHUNK = 100


class RunData(NamedTuple):
    """What a version's run holds, as plain mappings."""

    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    artifact_uri: str


def read_runs(client: MlflowClient, run_ids: list[str]) -> dict[str, RunData]:
    """The runs of ``run_ids`` (deleted ones included) by id, read in one search per hundred runs."""
    out: dict[str, RunData] = {}
    ids = sorted(set(filter(None, run_ids)))
    if not ids:
        return out
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        quoted = ", ".join(f"'{i}'" for i in chunk)
        for run in client.search_runs(
            experiments, f"attributes.run_id IN ({quoted})", run_view_type=ViewType.ALL, max_results=len(chunk)
        ):
            data = run.data
            out[run.info.run_id] = RunData(
                dict(data.tags), dict(data.params), dict(data.metrics), str(run.info.artifact_uri)
            )
    return out


def version_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics a version reports: its run's, without the label counts and class balance."""
    return {k: float(v) for k, v in metrics.items() if not k.startswith("label_")}


def to_version(mv: MlflowModelVersion, run: RunData | None) -> ModelVersion | None:
    """The packwise version an MLflow version stands for; None when packwise did not write it.

    The status is the last status change of the audit trail (the truth), not the ``packwise.status`` tag.
    """
    tags: dict[str, str] = dict(mv.tags or {})
    if TAG_STATUS not in tags or TAG_PACKAGE_TYPE not in tags:
        return None  # not written by packwise (e.g. registered by hand in the UI)
    data = run or RunData({}, {}, {}, "")
    audit = audit_events(tags) + audit_events(data.tags)  # versions made before runs held the trail
    changes = [event for event in audit if event.action == "status"]
    legacy_metrics = json.loads(tags.get(LEGACY_TAG_METRICS, "null"))
    legacy_stats = json.loads(tags.get(LEGACY_TAG_LABEL_STATS, "null"))
    if data.artifact_uri and LEGACY_TAG_ARTIFACT_URI not in tags:
        model_uri = f"{data.artifact_uri}/{MODEL_FILE_PATH}"
    else:
        model_uri = tags.get(LEGACY_TAG_ARTIFACT_URI, f"{mv.source}/{MODEL_FILE_NAME}")
    return ModelVersion(
        package_type=tags[TAG_PACKAGE_TYPE],
        version=int(mv.version),
        status=changes[-1].to_status if changes else Status(tags[TAG_STATUS]),
        created_at=data.params.get(PARAM_CREATED_AT, tags.get(LEGACY_TAG_CREATED_AT, "")),
        run_id=data.tags.get(TAG_RUN_ID, tags.get(TAG_RUN_ID, "")),
        candidate_key=tags.get(TAG_CANDIDATE_KEY, ""),
        data_fingerprint=tags.get(TAG_FINGERPRINT, ""),
        model_type=data.params.get(PARAM_MODEL_TYPE, tags.get(LEGACY_TAG_MODEL_TYPE, "")),
        metrics=legacy_metrics if legacy_metrics is not None else version_metrics(data.metrics),
        label_stats=legacy_stats if legacy_stats is not None else json.loads(data.params.get(PARAM_LABEL_STATS, "{}")),
        gate_report=tags.get(LEGACY_TAG_GATE_REPORT, data.tags.get(RUN_NOTE_TAG, "")),
        audit=audit,
        artifact_uri=model_uri,
    )


def download_model_file(client: MlflowClient, run_id: str, dest: str) -> str:
    """Downloads a version's ``model.tar.gz`` (inside the MLflow Model, or beside it on old versions)."""
    names = {f.path for f in client.list_artifacts(run_id, MODEL_ARTIFACT_DIR)}
    path = LEGACY_MODEL_FILE_PATH if LEGACY_MODEL_FILE_PATH in names else MODEL_FILE_PATH
    return str(client.download_artifacts(run_id, path, dst_path=dest))
