"""Small real Packwise models for registry tests: trained on synthetic products in well under a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from packwise.config import FeatureConfig, ModelConfig
from packwise.registry import Candidate, Status, TrainingRecord

PRODUCT_COLUMNS = FeatureConfig().input_columns(False)


def products(n: int, seed: int) -> pd.DataFrame:
    """``n`` synthetic products (raw columns, ``product_id`` included)."""
    from packwise.synthetic import generate_products

    return generate_products(n, seed)


def train_model(path: Path, package_type: str, seed: int, rounds: int = 8) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """Trains a tiny model for ``package_type`` into ``path``; returns it, its products and labels."""
    from packwise.artifact import save_model_artifact
    from packwise.features import build_features
    from packwise.models import get_model_type
    from packwise.synthetic import ground_truth

    rows = products(400, seed)
    labels = ground_truth(rows, [package_type])[f"suitable_{package_type}"].to_numpy().astype("float64")
    model = ModelConfig(num_boost_round=rounds, params={"max_depth": 3, "eta": 0.3, "nthread": 1})
    plugin = get_model_type("xgboost")
    spec = plugin.fit_spec(rows, FeatureConfig(), model)
    booster = plugin.train(build_features(rows, spec), labels, model)
    save_model_artifact(booster, spec, "xgboost", package_type, path)
    return path, rows, labels


def candidate(
    model_file: Path,
    package_type: str,
    key: str,
    status: Status,
    rows: pd.DataFrame,
    labels: np.ndarray,
    *,
    week: int = 1,
    pipeline_run_id: str = "kfp-run-1",
    **overrides: Any,
) -> Candidate:
    """A candidate as the register step builds it, with its training record."""
    from packwise.artifact import load_model_artifact
    from packwise.evaluation import score_metrics
    from packwise.models.base import predict

    loaded = load_model_artifact(model_file)
    prob, _ = predict(loaded.booster, loaded.spec, rows)
    metrics = score_metrics(labels.astype("int64"), prob, 0.5)
    positives = int(labels.sum())
    args: dict[str, Any] = {
        "package_type": package_type,
        "model_file": model_file,
        "status": status,
        "candidate_key": key,
        "data_fingerprint": f"fp{week:02d}{key}"[:16],
        "model_type": "xgboost",
        "metrics": {"auc": metrics.auc, "pr_auc": metrics.pr_auc, "log_loss": metrics.log_loss},
        "label_stats": {"count": len(labels), "positive_rate": float(labels.mean())},
        "gate_report": f"# Gate report\n\nweek {week}: auc {metrics.auc:.3f}",
        "reason": "approved: all criteria pass" if status == Status.APPROVED else "rejected: auc below floor",
        "who": "packwise-pipeline",
        "run_id": "",
        "training": TrainingRecord(
            pipeline_run_id=pipeline_run_id,
            week=week,
            model_params={"max_depth": 3, "eta": 0.3, "num_boost_round": 8},
            split={"validation_fraction": 0.2, "seed": 7},
            label_counts={"positive": positives, "negative": len(labels) - positives},
            input_example=rows[PRODUCT_COLUMNS].head(3).to_dict(orient="records"),
            snapshot_uri=f"file:///tmp/snapshots/week-{week}",
            candidate_metrics=metrics.model_dump(mode="json"),
        ),
    }
    args.update(overrides)
    return Candidate(**args)


def two_week_registry(root: Path) -> Any:
    """A registry after two weekly training runs of ``mailer`` and ``bag``, as the pipeline registers them.

    Week 1: both Approved (v1). Week 2: mailer v2 Approved (the new champion), bag v2 Rejected by the gate.

    Returns:
        The ``MlflowRegistry`` on ``root/mlflow.db`` (artifacts under ``root/art``).
    """
    from packwise.registry.mlflow_backend import MlflowRegistry

    registry = MlflowRegistry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=(root / "art").as_uri())
    plan = {
        1: {"mailer": Status.APPROVED, "bag": Status.APPROVED},
        2: {"mailer": Status.APPROVED, "bag": Status.REJECTED},
    }
    for week, statuses in plan.items():
        for package_type, status in statuses.items():
            model_file, rows, labels = train_model(root / f"{package_type}-{week}.tar.gz", package_type, seed=week)
            registry.register(
                candidate(
                    model_file,
                    package_type,
                    f"{package_type}-week{week}",
                    status,
                    rows,
                    labels,
                    week=week,
                    pipeline_run_id=f"kfp-week-{week}",
                )
            )
    return registry
