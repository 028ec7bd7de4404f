"""What an evaluation shows in the KFP UI, written by the evaluate component whatever the compute.

Imported inside component bodies (the images carry packwise_components), so it imports nothing at module
level and takes the output artifacts as they are.
"""

from __future__ import annotations

from typing import Any


def record_evaluation(result: Any, metrics: Any, classification: Any) -> None:
    """Logs an `EvaluationResult` to a Metrics and a ClassificationMetrics output artifact.

    AUC, PR-AUC and log loss of candidate and champion (when there is one), the candidate's ROC curve and
    confusion matrix. The local runner's cache treats an output without a file as missing, so the values
    are also written to each artifact's file.
    """
    import json
    from pathlib import Path

    for who, scores in (("candidate", result.candidate), ("champion", result.champion)):
        for name in ("auc", "pr_auc", "log_loss"):
            if scores is not None:
                metrics.log_metric(f"{who}_{name}", round(float(scores[name]), 6))
    roc = result.candidate["roc_curve"]
    classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    classification.log_confusion_matrix(["unsuitable", "suitable"], result.candidate["confusion_matrix"])
    Path(metrics.path).write_text(json.dumps(metrics.metadata))
    Path(classification.path).write_text(json.dumps(classification.metadata))
