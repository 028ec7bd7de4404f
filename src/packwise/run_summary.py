"""The decision of every package type in a training run, for the exit handler and the CLI.

The exit handler cannot take outputs from the tasks it guards, so it rebuilds the picture from the run
record (run id -> data fingerprint) and the registry (candidate key -> version). A type whose training or
evaluation failed has no version for this run and is reported as failed, not silently dropped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from packwise.config import RegistryConfig
from packwise.lineage import candidate_key, read_run_record, recent_run_records, write_run_record


def summarize_training_run(
    storage_root: str | Path,
    run_id: str,
    registry_config: RegistryConfig,
    package_types: list[str],
    features_json: str,
    split_json: str,
    model_json: str,
    pipeline_state: str = "",
    error_message: str = "",
) -> dict[str, Any]:
    """Looks up each type's decision for this run and writes it next to the run record."""
    from packwise.registry import open_registry

    record = read_run_record(storage_root, run_id) or {}
    fingerprint = record.get("fingerprint")
    rows: list[dict[str, Any]] = []
    registry = open_registry(registry_config) if fingerprint else None
    for package_type in package_types:
        row: dict[str, Any] = {"package_type": package_type, "decision": "failed", "version": None}
        if registry is not None and fingerprint:
            key = candidate_key(fingerprint, package_type, features_json, split_json, model_json)
            version = registry.find_by_candidate_key(package_type, key)
            if version is not None:
                version = _stamp_run(registry, version, run_id)
                champion = registry.champion(package_type)
                row.update(
                    decision=str(version.status),
                    version=version.version,
                    reason=version.audit[0].reason if version.audit else "",
                    candidate={k: version.metrics.get(k) for k in ("auc", "pr_auc", "log_loss")},
                    champion_scores={k: version.metrics.get(f"champion_{k}") for k in ("auc", "pr_auc", "log_loss")},
                    champion_version=None if champion is None else champion.version,
                )
            else:
                row["reason"] = "no candidate registered: its training, evaluation or gate task failed"
        else:
            row["reason"] = "the extract did not finish, so nothing was trained"
        rows.append(row)
    summary = {
        "run_id": run_id,
        "week": record.get("week"),
        "fingerprint": fingerprint,
        "n_labels": record.get("n_labels"),
        "pipeline_state": pipeline_state,
        "error": error_message,
        "package_types": rows,
    }
    write_run_record(storage_root, f"{run_id}.summary", summary)
    return summary


def _stamp_run(registry: Any, version: Any, run_id: str) -> Any:
    """The version with its pipeline run recorded (the first run that reports it); a registry that
    refuses leaves the version as it was, since a report must never fail for want of lineage."""
    from packwise.errors import RegistryError

    try:
        return registry.record_run(version.package_type, version.version, run_id)
    except RegistryError as err:
        logging.getLogger(__name__).warning(
            "could not record run %s on %s v%s: %s", run_id, version.package_type, version.version, err
        )
        return version


def summary_markdown(summary: dict[str, Any]) -> tuple[str, str]:
    """Subject line and Markdown body of a training-run notification."""
    rows = summary["package_types"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["decision"]] = counts.get(r["decision"], 0) + 1
    subject = f"Packwise training week {summary.get('week')} ({summary['run_id']}): " + ", ".join(
        f"{n} {d}" for d, n in sorted(counts.items())
    )
    lines = [
        "| package type | decision | version | candidate AUC | champion AUC (same split) | reason |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cand = (r.get("candidate") or {}).get("auc")
        champ = (r.get("champion_scores") or {}).get("auc")
        lines.append(
            f"| {r['package_type']} | {r['decision']} | {r['version'] or '-'} | "
            f"{_fmt(cand)} | {_fmt(champ)} | {r.get('reason', '')} |"
        )
    if summary.get("error"):
        lines.append(f"\nPipeline error: {summary['error']}")
    return subject, "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def read_summary(storage_root: str | Path, run_id: str) -> dict[str, Any] | None:
    return read_run_record(storage_root, f"{run_id}.summary")


def recent_summaries(storage_root: str | Path, limit: int = 20) -> list[dict[str, Any]]:
    """The summaries of the newest `limit` runs (training and inference), newest first."""
    return recent_run_records(storage_root, ".summary", limit)


def outcome(summary: dict[str, Any]) -> str:
    """One phrase for a run: its decisions (training) or what it scored and loaded (inference)."""
    if summary.get("pipeline") == "inference" or "mode" in summary:
        n = summary.get("n_products")
        state = "loaded" if summary.get("loaded") else "not loaded"
        if summary.get("already_loaded"):
            state = "already loaded before"
        return f"{'-' if n is None else f'{n:,}'} scored, {state}"
    counts: dict[str, int] = {}
    for row in summary.get("package_types") or []:
        counts[str(row.get("decision"))] = counts.get(str(row.get("decision")), 0) + 1
    return ", ".join(f"{n} {decision}" for decision, n in counts.items()) or "-"


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, default=str)
