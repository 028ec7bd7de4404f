"""The inference run's summary: from the run records to the counts, shares and models, and its Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _shares(counts: Mapping[str, int], package_types: Sequence[str]) -> dict[str, float]:
    n = sum(int(counts.get(t, 0)) for t in package_types)
    return {t: (int(counts.get(t, 0)) / n if n else 0.0) for t in package_types}


def summarize_inference_run(
    storage_root: str | Path,
    run_id: str,
    package_types: Sequence[str],
    pipeline_state: str = "",
    error_message: str = "",
) -> dict[str, Any]:
    """The run's outcome from its run records; written as ``<run_id>.summary``."""
    from packwise.lineage import read_run_record, write_run_record

    extract = read_run_record(storage_root, run_id) or {}
    models = read_run_record(storage_root, f"{run_id}.models") or {}
    load = read_run_record(storage_root, f"{run_id}.load")
    types = list(package_types)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": "inference",
        "mode": extract.get("mode") or (load or {}).get("mode"),
        "pipeline_state": pipeline_state,
        "error": error_message,
        "loaded": bool(load and load.get("loaded")),
        "already_loaded": bool(load and not load.get("loaded")),
        "n_products": None,
        "since": extract.get("since"),
        "watermark_before": None,
        "watermark_after": None,
        "models": {t: m.get("version") for t, m in models.items()},
        "models_pinned": sorted(t for t, m in models.items() if m.get("pinned")),
        "unseen": {},
        "package_types": [],
        "expected_cost": None,
    }
    if load is not None:
        previous = load.get("previous") or None
        shares = _shares(load.get("recommended") or {}, types)
        before = _shares(previous["recommended"], types) if previous else None
        summary.update(
            n_products=load["n_products"],
            watermark_before=load.get("watermark_before"),
            watermark_after=load.get("watermark_after"),
            unseen=load.get("unseen") or {},
            previous_run_id=None if previous is None else previous["run_id"],
            superseded=load.get("superseded", 0),
            expected_cost=load.get("expected_cost"),
        )
        summary["models"] = load.get("models") or summary["models"]
        summary["package_types"] = [
            {
                "package_type": t,
                "count": int((load.get("recommended") or {}).get(t, 0)),
                "share": shares[t],
                "previous_share": None if before is None else before[t],
                "change": None if before is None else shares[t] - before[t],
            }
            for t in types
        ]
    write_run_record(storage_root, f"{run_id}.summary", summary)
    return summary


def inference_summary_markdown(summary: Mapping[str, Any]) -> tuple[str, str]:
    """Subject line and Markdown body of an inference-run notification."""
    state = "loaded" if summary["loaded"] else "already loaded" if summary["already_loaded"] else "failed"
    subject = (
        f"Packwise inference {summary.get('mode')} ({summary['run_id']}): {state}, "
        f"{summary.get('n_products') if summary.get('n_products') is not None else '-'} products"
    )
    lines = ["| package type | recommended | share | change | model |", "|---|---|---|---|---|"]
    for row in summary.get("package_types", []):
        change = "-" if row["change"] is None else f"{row['change'] * 100:+.1f} pp"
        version = summary.get("models", {}).get(row["package_type"])
        lines.append(
            f"| {row['package_type']} | {row['count']} | {row['share'] * 100:.1f}% | {change} | "
            f"{'-' if version is None else f'v{version}'} |"
        )
    if summary.get("expected_cost") is not None and summary.get("n_products"):
        per_product = summary["expected_cost"] / summary["n_products"]
        total = summary["expected_cost"]
        lines.append(f"\nExpected cost (packaging + damage): {total:,.2f} ({per_product:.3f} per product)")
    unseen = {k: v for k, v in (summary.get("unseen") or {}).items() if v}
    if unseen:
        lines.append(
            "\nUnseen category values (scored as all-zero one-hot): "
            + ", ".join(f"{k}: {v}" for k, v in sorted(unseen.items()))
        )
    if summary.get("error"):
        lines.append(f"\nPipeline error: {summary['error']}")
    return subject, "\n".join(lines)

