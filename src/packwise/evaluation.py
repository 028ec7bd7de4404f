"""Scores of one model on one validation split, and how far two label distributions are apart.

`score_metrics` is what the evaluate task records for a candidate and for the champion, both scored on the
same validation split of this run, so the gate compares like with like. The label distribution helpers
measure label shift between the training labels of a candidate and of its champion.

numpy and scikit-learn are imported inside `score_metrics` only: the gate imports the label shift helpers
from here and runs in a light task that must start fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from packwise.errors import DataValidationError

if TYPE_CHECKING:
    import numpy as np

LabelShiftMetric = Literal["jensen_shannon", "l_infinity"]

ROC_MAX_POINTS = 101
"""Most points kept of a ROC curve: enough for the KFP UI's plot, small enough for its metadata store."""

PROB_CLIP = 1e-15
"""Probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] for log loss, so one confident mistake is
a large but finite loss rather than infinity."""

_DISTRIBUTION_TOLERANCE = 1e-6


class RocCurve(BaseModel):
    """A ROC curve, downsampled, in the shape KFP's `ClassificationMetrics.log_roc_curve` takes.

    Attributes:
        fpr: False positive rates, ascending, starting at 0 and ending at 1.
        tpr: True positive rates, one per `fpr`.
        thresholds: Decision thresholds, descending, one per `fpr`. The first one, infinite in
            scikit-learn, is replaced by 1 + the highest score (scikit-learn < 1.3's convention) so the
            curve stays valid JSON.
    """

    model_config = ConfigDict(frozen=True)

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]


class ScoreMetrics(BaseModel):
    """How well one model's probabilities separate the labels of one validation split.

    Attributes:
        n: Number of scored rows.
        positive_rate: Share of rows labelled suitable (1).
        auc: Area under the ROC curve.
        pr_auc: Average precision (the step-wise area under the precision-recall curve).
        log_loss: Mean binary cross-entropy in nats, probabilities clipped by `PROB_CLIP`.
        threshold: The probability at or above which a row is predicted suitable.
        confusion_matrix: `[[tn, fp], [fn, tp]]` at `threshold`.
        roc_curve: The ROC curve, at most `ROC_MAX_POINTS` points.
    """

    model_config = ConfigDict(frozen=True)

    n: int
    positive_rate: float
    auc: float
    pr_auc: float
    log_loss: float
    threshold: float
    confusion_matrix: tuple[tuple[int, int], tuple[int, int]]
    roc_curve: RocCurve


def downsample_indices(length: int, max_points: int = ROC_MAX_POINTS) -> list[int]:
    """Evenly spaced indices into a sequence of `length`, always keeping the first and the last.

    Args:
        length: Length of the sequence.
        max_points: Most indices to return; at least 2.

    Returns:
        Ascending unique indices; all of them when `length <= max_points`.
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2 to keep both ends of a curve")
    if length <= max_points:
        return list(range(length))
    step = (length - 1) / (max_points - 1)
    # step > 1 here, so rounding cannot produce duplicates.
    return [round(i * step) for i in range(max_points)]


def _check_inputs(y_true: np.ndarray, prob: np.ndarray, threshold: float) -> None:
    import numpy as np

    if y_true.ndim != 1 or prob.ndim != 1:
        raise DataValidationError(
            f"labels and probabilities must be 1-D, got shapes {y_true.shape} and {prob.shape}; pass one column of each"
        )
    if len(y_true) != len(prob):
        raise DataValidationError(
            f"{len(y_true)} labels but {len(prob)} probabilities; score exactly the labelled rows"
        )
    if len(y_true) == 0:
        raise DataValidationError("the validation split is empty; lower split.train_ratio or add labels")
    bad_labels = sorted(set(np.unique(y_true).tolist()) - {0, 1})
    if bad_labels:
        raise DataValidationError(
            f"labels must be 0 or 1, found {bad_labels[:5]}; map labels to 0 (unsuitable) and 1 (suitable)"
        )
    if not np.all(np.isfinite(prob)) or prob.min() < 0.0 or prob.max() > 1.0:
        raise DataValidationError(
            "probabilities must be finite and within [0, 1]; pass the model's predicted probabilities, not raw margins"
        )
    if not 0.0 <= threshold <= 1.0:
        raise DataValidationError(f"threshold {threshold} is outside [0, 1]; set it in package_types")
    classes = np.unique(y_true)
    if len(classes) < 2:
        only = "suitable (1)" if int(classes[0]) == 1 else "unsuitable (0)"
        raise DataValidationError(
            f"all {len(y_true)} validation labels are {only}, so AUC is undefined; add labels of the "
            "other class for this package type or change split.seed / split.train_ratio"
        )


def score_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float) -> ScoreMetrics:
    """Scores predicted suitability probabilities against the true labels.

    Args:
        y_true: Labels, 0 (unsuitable) or 1 (suitable), one per row.
        prob: Predicted probability of label 1, one per row.
        threshold: Rows with `prob >= threshold` are predicted suitable (for the confusion matrix).

    Returns:
        The metrics, JSON-friendly through `model_dump(mode="json")`.

    Raises:
        DataValidationError: If the inputs are malformed, or all labels are of one class (AUC and
            average precision are undefined then).
    """
    import numpy as np
    from sklearn import metrics

    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=float)
    _check_inputs(y, p, threshold)
    y = y.astype(int)

    clipped = np.clip(p, PROB_CLIP, 1.0 - PROB_CLIP)
    predicted = (p >= threshold).astype(int)
    cm = metrics.confusion_matrix(y, predicted, labels=[0, 1])
    fpr, tpr, thresholds = metrics.roc_curve(y, p)
    thresholds = thresholds.astype(float)
    if not np.isfinite(thresholds[0]):
        thresholds[0] = float(p.max()) + 1.0
    keep = downsample_indices(len(fpr))

    return ScoreMetrics(
        n=len(y),
        positive_rate=float(y.mean()),
        auc=float(metrics.roc_auc_score(y, p)),
        pr_auc=float(metrics.average_precision_score(y, p)),
        log_loss=float(metrics.log_loss(y, clipped, labels=[0, 1])),
        threshold=float(threshold),
        confusion_matrix=((int(cm[0, 0]), int(cm[0, 1])), (int(cm[1, 0]), int(cm[1, 1]))),
        roc_curve=RocCurve(
            fpr=tuple(float(fpr[i]) for i in keep),
            tpr=tuple(float(tpr[i]) for i in keep),
            thresholds=tuple(float(thresholds[i]) for i in keep),
        ),
    )


def label_distribution(positive_rate: float) -> tuple[float, float]:
    """The binary label distribution `(share of 0, share of 1)` of a positive rate.

    Args:
        positive_rate: Share of labels that are 1, in [0, 1].

    Returns:
        `(1 - positive_rate, positive_rate)`.
    """
    if not 0.0 <= positive_rate <= 1.0 or math.isnan(positive_rate):
        raise DataValidationError(f"positive rate {positive_rate} is outside [0, 1]; it must be a share")
    return (1.0 - positive_rate, positive_rate)


def _check_distributions(p: Sequence[float], q: Sequence[float]) -> None:
    if len(p) != len(q) or len(p) == 0:
        raise ValueError(f"distributions must be non-empty and of equal length, got {len(p)} and {len(q)}")
    for name, dist in (("p", p), ("q", q)):
        if any(not math.isfinite(v) or v < 0.0 for v in dist):
            raise ValueError(f"{name} has a negative or non-finite probability: {list(dist)}")
        if not math.isclose(math.fsum(dist), 1.0, abs_tol=_DISTRIBUTION_TOLERANCE):
            raise ValueError(f"{name} sums to {math.fsum(dist)}, not 1: {list(dist)}")


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two discrete distributions, in bits (base 2), within [0, 1].

    This is the divergence itself, `JSD = (KL(p || m) + KL(q || m)) / 2` with `m = (p + q) / 2`: the
    square of `scipy.spatial.distance.jensenshannon(p, q, base=2)`, which returns the Jensen-Shannon
    *distance* (and in nats unless `base=2`): a limit of 0.02 here is a distance of ~0.14 there.

    scipy is imported here, not at module level: it costs ~0.8 s and the gate imports this module.

    Args:
        p: A probability distribution.
        q: A probability distribution over the same outcomes, in the same order.

    Returns:
        The divergence: 0 for identical distributions, 1 for disjoint ones.

    Raises:
        ValueError: If the inputs are not distributions of the same length.
    """
    from scipy.spatial.distance import jensenshannon

    _check_distributions(p, q)
    jsd = float(jensenshannon(p, q, base=2.0)) ** 2
    return min(max(jsd, 0.0), 1.0)  # rounding can leave it a hair outside [0, 1]


def l_infinity(p: Sequence[float], q: Sequence[float]) -> float:
    """Largest absolute difference between the probabilities of any outcome (Chebyshev distance).

    Args:
        p: A probability distribution.
        q: A probability distribution over the same outcomes, in the same order.

    Returns:
        `max_i |p_i - q_i|`, within [0, 1]. For binary labels it is the difference of positive rates.

    Raises:
        ValueError: If the inputs are not distributions of the same length.
    """
    _check_distributions(p, q)
    return max(abs(pi - qi) for pi, qi in zip(p, q, strict=True))


def label_shift(metric: LabelShiftMetric, p_rate: float, q_rate: float) -> float:
    """Label shift between two binary label sets, given their positive rates.

    Args:
        metric: `jensen_shannon` (divergence in bits, see `jensen_shannon`) or `l_infinity`.
        p_rate: Positive rate of the first label set (the candidate's training labels).
        q_rate: Positive rate of the second label set (the champion's training labels).

    Returns:
        The shift, 0 when the rates are equal.
    """
    p, q = label_distribution(p_rate), label_distribution(q_rate)
    if metric == "jensen_shannon":
        return jensen_shannon(p, q)
    if metric == "l_infinity":
        return l_infinity(p, q)
    raise ValueError(f"unknown label shift metric {metric!r}; use jensen_shannon or l_infinity")
