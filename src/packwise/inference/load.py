"""The inference job's last two steps: load (every product scored once, then the predictions, exactly once)
and notify (the run's summary).

Split from `packwise.inference.steps` by concern: these write to the warehouse and the notifiers, the
steps before them only read and score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from packwise.config import (
    InferenceConfig,
    NotifyConfig,
    WarehouseConfig,
)
from packwise.inference.steps import check_mode, collect_scores
from packwise.progress import task_report

# -- load ------------------------------------------------------------------------------------------


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def load_predictions(
    plan: Mapping[str, Any],
    scored: Sequence[tuple[Path, Mapping[str, Any]]],
    warehouse: WarehouseConfig,
    inference: InferenceConfig,
    storage_root: str | Path,
    run_id: str,
    mode: str,
    since: str | None,
    watermark: str | None,
) -> dict[str, Any]:
    """Checks that every product was scored once (`collect_scores`), then loads the run's predictions exactly
    once (see `packwise.predictions.load_predictions`).

    The check is this task's first step, before the warehouse is opened: a shard missing or short fails
    here with nothing written. It was a task of its own until 2026-12-03; in the load it costs the footer
    of each scored file and saves the DAG a task (a process, or a pod on a cluster) on every run.

    Args:
        plan: The scoring plan of `prepare_products` (rows prepared, package types, model versions).
        scored: Each shard's scored file as this task sees it (on a cluster, artifacts are localized per
            task) and that shard's `score_shard` statistics.
        warehouse: The `warehouse` config section.
        inference: The `inference` config section.
        storage_root: Root of Packwise's storage (run records).
        run_id: The run; a run id loads once.
        mode: daily or monthly.
        since: The watermark the products were selected after (ISO), if any.
        watermark: The largest added_at among the products (ISO), if any.

    Returns:
        The load record (what was loaded, or that the run was loaded before), with the run's models, unseen
        counts and expected cost.
    """
    from packwise.faults import maybe_fail
    from packwise.lineage import write_run_record
    from packwise.predictions import load_predictions as load_once
    from packwise.warehouse import open_warehouse

    with task_report("load-predictions", None):
        maybe_fail("load-predictions")
        check_mode(mode)
        manifest = collect_scores(scored, plan)
        with open_warehouse(warehouse) as wh:
            result = load_once(
                wh,
                [Path(f) for f in manifest["files"]],
                run_id=run_id,
                mode=mode,
                package_types=manifest["package_types"],
                versions=manifest["models"],
                expected_rows=int(manifest["n_products"]),
                since=_timestamp(since),
                watermark=_timestamp(watermark),
                recommended=manifest["recommended"],
                unseen=manifest["unseen"],
                batch_rows=inference.batch_rows,
                keep_runs=inference.keep_runs,
            )
        record = {**result.to_dict(), "mode": mode, "models": manifest["models"], "unseen": manifest["unseen"]}
        record["expected_cost"] = manifest.get("expected_cost")
        write_run_record(storage_root, f"{run_id}.load", record)
        return record


# -- notify ----------------------------------------------------------------------------------------


def notify_inference(
    storage_root: str | Path,
    run_id: str,
    notify: NotifyConfig,
    package_types: Sequence[str],
    pipeline_state: str,
    error_message: str,
) -> dict[str, Any]:
    """Sends the run's summary; runs whether the body succeeded or not."""
    with task_report("notify-inference", None):
        from packwise.inference.summary import inference_summary_markdown, summarize_inference_run
        from packwise.notify import open_notifier

        summary = summarize_inference_run(storage_root, run_id, package_types, pipeline_state, error_message)
        subject, body = inference_summary_markdown(summary)
        open_notifier(notify).send(subject, body, summary)
        return summary
