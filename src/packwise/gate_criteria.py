"""The gate's criteria: the evidence about a model, what each criterion measures, and its verdict.

`CRITERIA` (scores and training labels) and `QUALITY_CRITERIA` (labels against the champion's snapshot)
list every criterion in report order; each name is a `GateConfig` field holding its `Limit`. A value
exactly at a bound (within float noise) passes it; an unmeasurable (NaN) value never does.
`packwise.gate` turns the verdicts into a decision. Nothing heavy is imported here either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from packwise.errors import DataValidationError
from packwise.evaluation import label_shift
from packwise.label_quality import LabelQuality

if TYPE_CHECKING:
    from packwise.config import GateConfig, Limit

Verdict = Literal["pass", "review", "reject", "n/a", "off"]
Kind = Literal["absolute", "comparative"]
Direction = Literal["min", "max"]

# Values within this of a bound count as at the bound, so float noise (0.90 - 0.88 = 0.0200000000000000018)
# does not flip a verdict.
_REL_TOL = 1e-9
_ABS_TOL = 1e-12


class Evidence(BaseModel):
    """What the gate knows about one model of a package type.

    Attributes:
        package_type: The package type the model classifies.
        version: Registry version of the champion; None for a candidate not yet registered.
        auc: ROC AUC on this run's validation split.
        pr_auc: Average precision on this run's validation split.
        log_loss: Log loss on this run's validation split.
        label_count: Number of labels the model was trained on.
        positive_rate: Share of the model's training labels that are 1 (suitable).
    """

    model_config = ConfigDict(frozen=True)

    package_type: str
    version: int | None
    auc: float
    pr_auc: float
    log_loss: float
    label_count: int
    positive_rate: float

    @model_validator(mode="after")
    def _plausible(self) -> Evidence:
        problems = [
            f"{name} {value!r} is not within [0, 1]"
            for name, value in (
                ("auc", self.auc),
                ("pr_auc", self.pr_auc),
                ("positive_rate", self.positive_rate),
            )
            if not 0.0 <= value <= 1.0  # also catches NaN
        ]
        if not (math.isfinite(self.log_loss) and self.log_loss >= 0.0):
            problems.append(f"log_loss {self.log_loss!r} is not a finite non-negative number")
        if self.label_count < 0:
            problems.append(f"label_count {self.label_count} is negative")
        if problems:
            who = f"{self.package_type} v{self.version}" if self.version is not None else self.package_type
            raise DataValidationError(
                f"gate evidence for {who}: {'; '.join(problems)}; re-run its evaluation on the validation split"
            )
        return self


@dataclass(frozen=True)
class _Criterion:
    name: str
    kind: Kind
    direction: Direction
    measures: str
    value: Callable[[Evidence, Evidence | None, GateConfig], float | None]


def _ratio(numerator: float, denominator: float, when_both_zero: float) -> float:
    # A zero denominator (a perfect champion's log loss, a champion trained on no labels) must not pass
    # silently: any worsening over zero is infinitely large.
    if denominator != 0.0:
        return numerator / denominator
    if numerator == 0.0:
        return when_both_zero
    return math.inf if numerator > 0 else -math.inf


def _auc_drop(c: Evidence, ch: Evidence | None, _: GateConfig) -> float | None:
    return None if ch is None else ch.auc - c.auc


def _pr_auc_drop(c: Evidence, ch: Evidence | None, _: GateConfig) -> float | None:
    return None if ch is None else ch.pr_auc - c.pr_auc


def _log_loss_increase(c: Evidence, ch: Evidence | None, _: GateConfig) -> float | None:
    return None if ch is None else c.log_loss - ch.log_loss


def _auc_drop_rel(c: Evidence, ch: Evidence | None, g: GateConfig) -> float | None:
    return None if ch is None else _ratio(ch.auc - c.auc, ch.auc, 0.0)


def _pr_auc_drop_rel(c: Evidence, ch: Evidence | None, g: GateConfig) -> float | None:
    return None if ch is None else _ratio(ch.pr_auc - c.pr_auc, ch.pr_auc, 0.0)


def _log_loss_increase_rel(c: Evidence, ch: Evidence | None, g: GateConfig) -> float | None:
    return None if ch is None else _ratio(c.log_loss - ch.log_loss, ch.log_loss, 0.0)


def _label_shift(c: Evidence, ch: Evidence | None, g: GateConfig) -> float | None:
    return None if ch is None else label_shift(g.label_shift_metric, c.positive_rate, ch.positive_rate)


def _label_count_fraction(c: Evidence, ch: Evidence | None, g: GateConfig) -> float | None:
    return None if ch is None else _ratio(float(c.label_count), float(ch.label_count), 1.0)


CRITERIA: tuple[_Criterion, ...] = (
    _Criterion("min_auc", "absolute", "min", "candidate ROC AUC", lambda c, ch, g: c.auc),
    _Criterion("min_pr_auc", "absolute", "min", "candidate average precision", lambda c, ch, g: c.pr_auc),
    _Criterion("max_log_loss", "absolute", "max", "candidate log loss", lambda c, ch, g: c.log_loss),
    _Criterion("auc_drop_abs", "comparative", "max", "champion AUC - candidate AUC", _auc_drop),
    _Criterion("auc_drop_rel", "comparative", "max", "AUC drop / champion AUC", _auc_drop_rel),
    _Criterion("pr_auc_drop_abs", "comparative", "max", "champion PR AUC - candidate PR AUC", _pr_auc_drop),
    _Criterion("pr_auc_drop_rel", "comparative", "max", "PR AUC drop / champion PR AUC", _pr_auc_drop_rel),
    _Criterion(
        "log_loss_increase_abs",
        "comparative",
        "max",
        "candidate log loss - champion log loss",
        _log_loss_increase,
    ),
    _Criterion(
        "log_loss_increase_rel",
        "comparative",
        "max",
        "log loss increase / champion log loss",
        _log_loss_increase_rel,
    ),
    _Criterion("label_shift", "comparative", "max", "training label shift vs champion", _label_shift),
    _Criterion(
        "label_count_min_fraction",
        "comparative",
        "min",
        "training labels / champion's",
        _label_count_fraction,
    ),
    _Criterion(
        "label_count_max_fraction",
        "comparative",
        "max",
        "training labels / champion's",
        _label_count_fraction,
    ),
)
"""Every gate criterion, in report order. Each name is a `GateConfig` field holding its `Limit`."""


@dataclass(frozen=True)
class _QualityCriterion:
    name: str
    direction: Direction
    measures: str
    value: Callable[[LabelQuality], float | None]


QUALITY_CRITERIA: tuple[_QualityCriterion, ...] = (
    _QualityCriterion(
        "label_churn", "max", "changed labels / products labelled in both snapshots", lambda q: q.churn_rate
    ),
    _QualityCriterion(
        "champion_disagreement",
        "max",
        "new labels the champion confidently contradicts - same on its validation",
        lambda q: q.disagreement_excess,
    ),
    _QualityCriterion(
        "frozen_auc_drop",
        "max",
        "champion AUC - candidate AUC, champion's validation labels as they were",
        lambda q: q.frozen_champion_auc - q.frozen_candidate_auc,
    ),
    _QualityCriterion(
        "frozen_log_loss_increase",
        "max",
        "candidate log loss - champion log loss, champion's validation labels as they were",
        lambda q: q.frozen_candidate_log_loss - q.frozen_champion_log_loss,
    ),
)
"""Label-quality criteria (comparative: n/a without a champion and its snapshot), after `CRITERIA`."""

MEASURES: dict[str, str] = {
    **{c.name: c.measures for c in CRITERIA},
    **{c.name: c.measures for c in QUALITY_CRITERIA},
}


def _past(value: float, bound: float | None, direction: Direction) -> bool:
    if bound is None:
        return False
    if math.isnan(value):
        return True  # an unmeasurable value never passes
    if math.isclose(value, bound, rel_tol=_REL_TOL, abs_tol=_ABS_TOL):
        return False
    return value < bound if direction == "min" else value > bound


def verdict_of(value: float | None, limit: Limit, direction: Direction) -> Verdict:
    if limit.review is None and limit.reject is None:
        return "off"
    if value is None:
        return "n/a"
    if _past(value, limit.reject, direction):
        return "reject"
    if _past(value, limit.review, direction):
        return "review"
    return "pass"
