"""Validation-split scores and label distribution distances."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon as scipy_js_distance

from packwise.errors import DataValidationError
from packwise.evaluation import (
    ROC_MAX_POINTS,
    ScoreMetrics,
    downsample_indices,
    jensen_shannon,
    l_infinity,
    label_distribution,
    label_shift,
    score_metrics,
)

# Four rows small enough to score by hand.
Y4 = np.array([0, 0, 1, 1])
P4 = np.array([0.1, 0.4, 0.35, 0.8])


def test_score_metrics_hand_checked_case() -> None:
    m = score_metrics(Y4, P4, threshold=0.5)

    assert m.n == 4
    assert m.positive_rate == pytest.approx(0.5)
    # Of the 4 (positive, negative) pairs only (0.35, 0.4) is ordered wrongly.
    assert m.auc == pytest.approx(0.75)
    # Ranked: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0): precision 1 at recall 0.5, 2/3 at recall 1.
    assert m.pr_auc == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    expected_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert m.log_loss == pytest.approx(expected_loss)
    # Predicted suitable only for 0.8: tn=2, fp=0, fn=1, tp=1.
    assert m.confusion_matrix == ((2, 0), (1, 1))
    assert m.threshold == 0.5


def test_confusion_matrix_counts_probability_at_threshold_as_positive() -> None:
    m = score_metrics(Y4, P4, threshold=0.4)
    # 0.4 (a negative) and 0.8 are predicted suitable; 0.35 is not.
    assert m.confusion_matrix == ((1, 1), (1, 1))


def test_perfect_separation() -> None:
    m = score_metrics(np.array([0, 1, 0, 1]), np.array([0.2, 0.9, 0.1, 0.7]), threshold=0.5)
    assert m.auc == pytest.approx(1.0)
    assert m.pr_auc == pytest.approx(1.0)
    assert m.confusion_matrix == ((2, 0), (0, 2))


def test_log_loss_clips_certain_mistakes_to_a_finite_loss() -> None:
    m = score_metrics(np.array([1, 0]), np.array([0.0, 0.0]), threshold=0.5)
    assert math.isfinite(m.log_loss)
    assert m.log_loss == pytest.approx(-math.log(1e-15) / 2, rel=1e-6)


def test_roc_curve_is_downsampled_keeping_its_endpoints_and_json_safe() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=5000)
    prob = np.clip(0.3 * y + rng.normal(0.35, 0.2, size=5000), 0.0, 1.0)
    from sklearn.metrics import roc_curve

    full_fpr, full_tpr, _ = roc_curve(y, prob)
    assert len(full_fpr) > ROC_MAX_POINTS  # the case is only a test if there is something to drop

    roc = score_metrics(y, prob, threshold=0.5).roc_curve

    assert 2 <= len(roc.fpr) <= ROC_MAX_POINTS
    assert len(roc.fpr) == len(roc.tpr) == len(roc.thresholds)
    assert (roc.fpr[0], roc.tpr[0]) == (full_fpr[0], full_tpr[0]) == (0.0, 0.0)
    assert (roc.fpr[-1], roc.tpr[-1]) == (full_fpr[-1], full_tpr[-1]) == (1.0, 1.0)
    assert list(roc.fpr) == sorted(roc.fpr)
    assert list(roc.thresholds) == sorted(roc.thresholds, reverse=True)
    assert all(math.isfinite(t) for t in roc.thresholds)
    assert roc.thresholds[0] > 1.0  # sklearn's "nothing predicted positive" point, made finite


def test_short_roc_curve_is_kept_whole() -> None:
    roc = score_metrics(Y4, P4, threshold=0.5).roc_curve
    assert roc.fpr[0] == 0.0 and roc.fpr[-1] == 1.0
    assert len(roc.fpr) <= 5


def test_downsample_indices() -> None:
    assert downsample_indices(5, max_points=10) == [0, 1, 2, 3, 4]
    idx = downsample_indices(1000, max_points=101)
    assert len(idx) == 101
    assert idx[0] == 0 and idx[-1] == 999
    assert idx == sorted(set(idx))
    assert downsample_indices(102, max_points=101)[-1] == 101
    with pytest.raises(ValueError):
        downsample_indices(10, max_points=1)


def test_score_metrics_round_trips_through_strict_json() -> None:
    m = score_metrics(Y4, P4, threshold=0.5)
    text = json.dumps(m.model_dump(mode="json"), allow_nan=False)
    assert ScoreMetrics.model_validate(json.loads(text)) == m


@pytest.mark.parametrize("labels, only", [([1, 1, 1], "suitable (1)"), ([0, 0, 0], "unsuitable (0)")])
def test_single_class_is_a_clear_error(labels: list[int], only: str) -> None:
    with pytest.raises(DataValidationError, match="AUC is undefined") as err:
        score_metrics(np.array(labels), np.array([0.2, 0.5, 0.9]), threshold=0.5)
    assert only in str(err.value)
    assert "add labels of the other class" in str(err.value)


@pytest.mark.parametrize(
    "y, prob, match",
    [
        ([0, 1], [0.5], "2 labels but 1 probabilities"),
        ([], [], "empty"),
        ([0, 2], [0.1, 0.9], "labels must be 0 or 1"),
        ([0, 1], [0.1, 1.5], "within \\[0, 1\\]"),
        ([0, 1], [0.1, float("nan")], "finite"),
    ],
)
def test_score_metrics_rejects_malformed_inputs(y: list[int], prob: list[float], match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        score_metrics(np.array(y, dtype=int), np.array(prob, dtype=float), threshold=0.5)


def test_label_distribution() -> None:
    assert label_distribution(0.25) == (0.75, 0.25)
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(DataValidationError):
            label_distribution(bad)


def test_jensen_shannon_hand_computed() -> None:
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2) = 0.2075187...; KL(q||m) = log2(4/3) = 0.4150375...
    expected = (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2
    assert expected == pytest.approx(0.3112781, abs=1e-7)
    assert jensen_shannon([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)


def test_jensen_shannon_is_the_divergence_not_scipys_distance() -> None:
    p, q = [0.7, 0.3], [0.4, 0.6]
    distance = float(scipy_js_distance(p, q, base=2))
    assert jensen_shannon(p, q) == pytest.approx(distance**2)
    assert jensen_shannon(p, q) < distance


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ([0.5, 0.5], [1.0, 0.0]),
        ([0.7, 0.3], [0.4, 0.6]),
        ([0.999, 0.001], [0.998, 0.002]),
        ([0.2, 0.3, 0.5], [0.5, 0.3, 0.2]),
    ],
)
def test_jensen_shannon_is_the_textbook_divergence_in_bits(p: list[float], q: list[float]) -> None:
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: list[float]) -> float:
        return math.fsum(a * math.log2(a / b) for a, b in zip(x, m, strict=True) if a > 0)

    assert jensen_shannon(p, q) == pytest.approx((kl(p) + kl(q)) / 2, abs=1e-12)


def test_jensen_shannon_bounds_and_symmetry() -> None:
    assert jensen_shannon([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert jensen_shannon([0.2, 0.8], [0.6, 0.4]) == pytest.approx(jensen_shannon([0.6, 0.4], [0.2, 0.8]))


def test_l_infinity() -> None:
    assert l_infinity([0.7, 0.3], [0.4, 0.6]) == pytest.approx(0.3)
    assert l_infinity([0.5, 0.25, 0.25], [0.5, 0.4, 0.1]) == pytest.approx(0.15)
    assert l_infinity([0.5, 0.5], [0.5, 0.5]) == 0.0


@pytest.mark.parametrize(
    "p, q",
    [([0.5, 0.5], [1.0]), ([0.6, 0.6], [0.5, 0.5]), ([-0.1, 1.1], [0.5, 0.5]), ([], [])],
)
def test_distances_reject_non_distributions(p: list[float], q: list[float]) -> None:
    with pytest.raises(ValueError):
        jensen_shannon(p, q)
    with pytest.raises(ValueError):
        l_infinity(p, q)


def test_label_shift_of_positive_rates() -> None:
    assert label_shift("l_infinity", 0.30, 0.25) == pytest.approx(0.05)
    assert label_shift("jensen_shannon", 0.5, 1.0) == pytest.approx(jensen_shannon([0.5, 0.5], [0.0, 1.0]))
    assert label_shift("jensen_shannon", 0.3, 0.3) == 0.0
    with pytest.raises(ValueError, match="unknown label shift metric"):
        label_shift("kl", 0.3, 0.3)  # type: ignore[arg-type, unused-ignore]
