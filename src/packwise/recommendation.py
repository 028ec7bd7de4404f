"""Recommendation policies over the suitability probabilities, and how well those probabilities are calibrated.

Two policies pick one package type per product from the per-type probabilities (least protective first):

- `threshold`: the first type whose probability clears its threshold; the most protective when none does
  (`packwise.scoring.recommend`).
- `cost`: the type with the lowest expected cost, packaging cost plus `damage_cost` times the probability
  that the type is not suitable. It needs probabilities that mean what they say; `reliability` measures
  that on the validation split (expected calibration error) and `fit_isotonic` maps raw probabilities to
  calibrated ones when they do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from packwise.errors import ConfigError


class Calibration(BaseModel):
    """A monotone map from raw to calibrated probability: piecewise linear through (`raw`, `calibrated`).

    Attributes:
        raw: Increasing raw probabilities (the knots).
        calibrated: The calibrated probability at each knot.
    """

    model_config = ConfigDict(frozen=True)

    raw: tuple[float, ...]
    calibrated: tuple[float, ...]

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, in the input's dtype."""
        if not self.raw:
            return prob
        return np.interp(prob, self.raw, self.calibrated).astype(prob.dtype, copy=False)


IDENTITY = Calibration(raw=(), calibrated=())
"""The calibration that leaves probabilities as they are."""


def fit_isotonic(labels: np.ndarray, prob: np.ndarray) -> Calibration:
    """Fits isotonic regression of the labels on the raw probabilities (scikit-learn), as knots.

    Args:
        labels: 0/1 labels of the validation split.
        prob: The model's raw probabilities for the same rows.
    """
    from sklearn.isotonic import IsotonicRegression

    if len(labels) != len(prob) or len(np.unique(labels)) < 2:
        raise ValueError("calibration needs as many probabilities as labels, and both classes")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(np.asarray(prob, dtype=np.float64), np.asarray(labels, dtype=np.float64))
    return Calibration(
        raw=tuple(float(x) for x in iso.X_thresholds_), calibrated=tuple(float(y) for y in iso.y_thresholds_)
    )


@dataclass(frozen=True)
class Reliability:
    """How well probabilities match observed frequencies.

    Attributes:
        ece: Expected calibration error: the row-weighted mean |observed rate - mean probability| over bins.
        max_gap: The largest such gap of a bin holding at least 1% of the rows.
        bins: Per bin (equal width in probability): rows, mean probability, observed positive rate.
    """

    ece: float
    max_gap: float
    bins: tuple[tuple[int, float, float], ...]


def reliability(labels: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> Reliability:
    """The reliability diagram and expected calibration error of `prob` against `labels`."""
    labels = np.asarray(labels, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    which = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    bins = []
    ece = max_gap = 0.0
    for b in range(n_bins):
        mask = which == b
        n = int(mask.sum())
        if not n:
            continue
        mean_p, rate = float(prob[mask].mean()), float(labels[mask].mean())
        bins.append((n, mean_p, rate))
        ece += n / len(prob) * abs(rate - mean_p)
        if n >= 0.01 * len(prob):
            max_gap = max(max_gap, abs(rate - mean_p))
    return Reliability(ece=ece, max_gap=max_gap, bins=tuple(bins))


def check_costs(package_types: Sequence[str], costs: Sequence[float | None], damage_cost: float | None) -> list[float]:
    """The packaging costs, once every type has one and the damage cost is set.

    Raises:
        ConfigError: A type has no cost, a cost is negative, or the damage cost is missing.
    """
    missing = [t for t, c in zip(package_types, costs, strict=True) if c is None]
    if missing or damage_cost is None:
        what = f"package_types[].cost of {', '.join(missing)}" if missing else "inference.damage_cost"
        raise ConfigError(f"inference.policy cost needs {what}; set it, or use inference.policy threshold")
    return [float(c) for c in costs if c is not None]


def recommend_by_cost(prob: np.ndarray, costs: Sequence[float], damage_cost: float) -> np.ndarray:
    """Index of the package type with the lowest expected cost, per row.

    Args:
        prob: Calibrated suitability probabilities, one column per type (least protective first).
        costs: Packaging cost of each type.
        damage_cost: Cost of one damaged item.

    Returns:
        Per row, argmin over types of cost + damage_cost * (1 - p); ties go to the less protective type.
    """
    if prob.ndim != 2 or prob.shape[1] != len(costs) or prob.shape[1] == 0:
        raise ValueError(f"expected probabilities of {len(costs)} package types, got shape {prob.shape}")
    expected = expected_costs(prob, costs, damage_cost)
    return np.argmin(expected, axis=1).astype(np.int32)


def expected_costs(prob: np.ndarray, costs: Sequence[float], damage_cost: float) -> np.ndarray:
    """Expected cost of every (row, type): packaging cost plus damage cost times P(not suitable)."""
    return np.asarray(costs, dtype=np.float64)[None, :] + damage_cost * (1.0 - prob.astype(np.float64))


def expected_cost_of(prob: np.ndarray, pick: np.ndarray, costs: Sequence[float], damage_cost: float) -> float:
    """Summed expected cost of the picked type of every row."""
    if not len(pick):
        return 0.0
    costs_all = expected_costs(prob, costs, damage_cost)
    return float(costs_all[np.arange(len(pick)), pick].sum())


@dataclass(frozen=True)
class CostModel:
    """What a recommendation costs, and the policy that picks one.

    Attributes:
        policy: `threshold` or `cost`.
        costs: Packaging cost of each package type, in scoring order.
        damage_cost: Cost of one damaged item.
    """

    policy: str
    costs: tuple[float, ...]
    damage_cost: float

    def pick(self, prob: np.ndarray) -> np.ndarray:
        """The lowest-expected-cost type of every row (for policy `cost`)."""
        return recommend_by_cost(prob, self.costs, self.damage_cost)

    def expected(self, prob: np.ndarray, pick: np.ndarray) -> float:
        """Summed expected cost of the picks."""
        return expected_cost_of(prob, pick, self.costs, self.damage_cost)


def cost_model(
    policy: str, package_costs: dict[str, float] | None, damage_cost: float | None, package_types: Sequence[str]
) -> CostModel | None:
    """The cost model of the `inference` section, or None when no costs are configured (threshold only).

    Args:
        policy: `inference.policy`.
        package_costs: `inference.package_costs` (copied from `package_types[].cost` on resolve).
        damage_cost: `inference.damage_cost`.
        package_types: The scoring order.

    Raises:
        ConfigError: Policy `cost` without a cost for every type or without a damage cost.
    """
    costs = [None if package_costs is None else package_costs.get(t) for t in package_types]
    if policy == "cost":
        checked = check_costs(package_types, costs, damage_cost)
        return CostModel(policy=policy, costs=tuple(checked), damage_cost=float(damage_cost or 0.0))
    if damage_cost is None or any(c is None for c in costs):
        return None
    return CostModel(policy=policy, costs=tuple(float(c or 0.0) for c in costs), damage_cost=damage_cost)
