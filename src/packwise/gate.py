"""The promotion gate: may a candidate replace the champion of its package type?

Both models are scored on this run's validation split, so their scores are comparable; the label
statistics are of each model's training labels. Every criterion is a `GateConfig` field of the same name
with optional `review` and `reject` bounds:

- absolute criteria bound the candidate's own scores and always apply;
- comparative criteria bound how much worse than the champion the candidate is, and how far its training
  labels moved; they apply only when a champion exists.

A value exactly at a bound passes it. Any reject rejects; otherwise any review sends the candidate to a
person; otherwise it is approved. The decision is plain data, passed between pipeline tasks as JSON.

This module imports nothing heavy (no numpy, scikit-learn or registry client): it runs in a light task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, field_serializer, model_validator

from packwise.errors import DataValidationError
from packwise.evaluation import label_shift
from packwise.label_quality import LabelQuality

if TYPE_CHECKING:
    from packwise.config import GateConfig, Limit

Outcome = Literal["approve", "review", "reject"]
Verdict = Literal["pass", "review", "reject", "n/a", "off"]
Kind = Literal["absolute", "comparative"]
Direction = Literal["min", "max"]

STATUS_BY_OUTCOME: dict[str, str] = {
    "approve": "Approved",
    "reject": "Rejected",
    "review": "PendingManualApproval",
}
"""Registry approval status of each outcome (SageMaker's ModelApprovalStatus names)."""

_OUTCOME_WORD: dict[str, str] = {"approve": "approved", "review": "needs review", "reject": "rejected"}
# The reason's first word; `review:` matches the reasons the registry step writes itself.
_REASON_PREFIX: dict[str, str] = {"approve": "approved", "review": "review", "reject": "rejected"}
_GLYPH: dict[str, str] = {
    "pass": "✅ pass",
    "review": "⚠️ review",
    "reject": "❌ reject",
    "n/a": "— n/a",
    "off": "— off",
}

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


class CriterionResult(BaseModel):
    """One criterion of one gate decision.

    Attributes:
        name: The `GateConfig` field that bounds it.
        kind: `absolute` (the candidate alone) or `comparative` (candidate against champion).
        value: The measured value; None when it cannot be measured (no champion).
        review: Bound past which a person must approve; None if not set.
        reject: Bound past which the candidate is rejected; None if not set.
        direction: `min` if values below a bound are past it, `max` if values above are.
        verdict: `pass`, `review`, `reject`, `n/a` (comparative, no champion) or `off` (no bounds).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Kind
    value: float | None
    review: float | None
    reject: float | None
    direction: Direction
    verdict: Verdict

    @field_serializer("value")
    def _value_to_json(self, value: float | None) -> float | str | None:
        if value is None or math.isfinite(value):
            return value
        return str(value)  # 'inf' / '-inf' / 'nan': strict JSON has no literal for them; they parse back

    def breach(self) -> str:
        """The value and the bound it is past, e.g. `auc_drop_abs 0.0300 > reject bound 0.02`."""
        bound = self.reject if self.verdict == "reject" else self.review
        sign = "<" if self.direction == "min" else ">"
        return f"{self.name} {_fmt_value(self.value)} {sign} {self.verdict} bound {_fmt_bound(bound)}"


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

_MEASURES: dict[str, str] = {
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


def _verdict(value: float | None, limit: Limit, direction: Direction) -> Verdict:
    if limit.review is None and limit.reject is None:
        return "off"
    if value is None:
        return "n/a"
    if _past(value, limit.reject, direction):
        return "reject"
    if _past(value, limit.review, direction):
        return "review"
    return "pass"


class GateDecision(BaseModel):
    """The gate's decision for one package type, with every criterion and the evidence behind it.

    Attributes:
        package_type: The package type decided on.
        outcome: `approve`, `review` or `reject`.
        status: Registry approval status: `Approved`, `PendingManualApproval` or `Rejected`.
        reason: One line saying why.
        criteria: Every criterion, in `CRITERIA` order.
        candidate: The candidate's evidence.
        champion: The champion's evidence; None for the first model of its type.
        label_shift_metric: How `label_shift` was measured (`jensen_shannon` or `l_infinity`).
        label_quality: The label-quality evidence; None without a champion or its snapshot.
    """

    model_config = ConfigDict(frozen=True)

    package_type: str
    outcome: Outcome
    status: str
    reason: str
    criteria: tuple[CriterionResult, ...]
    candidate: Evidence
    champion: Evidence | None
    label_shift_metric: str = "jensen_shannon"
    label_quality: LabelQuality | None = None

    @property
    def approved(self) -> bool:
        """True if the candidate becomes the champion."""
        return self.outcome == "approve"

    def criterion(self, name: str) -> CriterionResult:
        """The result of the criterion called `name`."""
        for result in self.criteria:
            if result.name == name:
                return result
        raise KeyError(f"no gate criterion {name!r}; known: {', '.join(r.name for r in self.criteria)}")

    def to_dict(self) -> dict[str, Any]:
        """`model_dump(mode="json")`, kept for training.py and components (their slices convert the callers)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        """`model_validate` with the one-line error of an unknown outcome, kept for training.py's caller."""
        outcome = data["outcome"]
        if outcome not in STATUS_BY_OUTCOME:
            raise ValueError(f"unknown gate outcome {outcome!r}; expected approve, review or reject")
        return cls.model_validate(data)

    def report_markdown(self) -> str:
        """A Markdown report of the decision, for the KFP UI and the registry's model description."""
        lines = [f"# Gate decision: `{self.package_type}` — {_OUTCOME_WORD[self.outcome]}", ""]
        lines.append(f"**{_OUTCOME_WORD[self.outcome].capitalize()}** ({self.status}): {self._why()}")
        lines.append("")
        if self.champion is None:
            lines.append(
                "There is no champion: this is the first model of its type, so only the absolute criteria "
                "apply; the comparative ones are n/a."
            )
        else:
            lines.append(
                f"Candidate and champion v{self.champion.version} were both scored on this run's validation "
                f"split; label statistics are of each model's training labels (label shift: "
                f"{self.label_shift_metric})."
            )
        lines += [
            "",
            "| Criterion | Measures | Review if | Reject if | Value | Verdict |",
            "|---|---|---|---|---|---|",
        ]
        for c in self.criteria:
            sign = "<" if c.direction == "min" else ">"
            review = "—" if c.review is None else f"{sign} {_fmt_bound(c.review)}"
            reject = "—" if c.reject is None else f"{sign} {_fmt_bound(c.reject)}"
            lines.append(
                f"| `{c.name}` | {_MEASURES.get(c.name, c.kind)} | {review} | {reject} | "
                f"{_fmt_value(c.value)} | {_GLYPH[c.verdict]} |"
            )
        lines += ["", "## Candidate vs champion", ""]
        champ_header = "Champion" if self.champion is None else f"Champion v{self.champion.version}"
        lines += [f"| | Candidate | {champ_header} |", "|---|---|---|"]
        rows: tuple[tuple[str, Callable[[Evidence], str]], ...] = (
            ("ROC AUC (validation)", lambda e: f"{e.auc:.4f}"),
            ("PR AUC (validation)", lambda e: f"{e.pr_auc:.4f}"),
            ("Log loss (validation)", lambda e: f"{e.log_loss:.4f}"),
            ("Training labels", lambda e: f"{e.label_count:,}"),
            ("Training positive rate", lambda e: f"{e.positive_rate:.4f}"),
        )
        for label, fmt in rows:
            champ = "—" if self.champion is None else fmt(self.champion)
            lines.append(f"| {label} | {fmt(self.candidate)} | {champ} |")
        lines += _label_quality_markdown(self.label_quality)
        return "\n".join(lines) + "\n"

    def _why(self) -> str:
        # The reason without its leading outcome word, which the report already shows in bold.
        _, _, rest = self.reason.partition(": ")
        return rest or self.reason


def _label_quality_markdown(q: LabelQuality | None) -> list[str]:
    lines = ["", "## Label quality against the champion's snapshot", ""]
    if q is None:
        return [*lines, "Not measured: no champion, or its snapshot is not in storage (the criteria are n/a)."]
    lines += [
        f"Champion snapshot `{q.champion_fingerprint[:16]}`; a confident prediction is >= {q.confident:g} "
        "towards a class.",
        "",
        "| Measurement | Count | Share |",
        "|---|---|---|",
        f"| Labels changed since the champion's snapshot | {q.n_changed:,} of {q.n_common:,} | {q.churn_rate:.4f} |",
        f"| New labels the champion confidently contradicts | {q.n_new_contradicted:,} of {q.n_new:,} | "
        f"{q.new_contradiction_rate:.4f} |",
        f"| Champion's validation labels it confidently contradicts | {q.n_reference_contradicted:,} of "
        f"{q.n_reference:,} | {q.reference_contradiction_rate:.4f} |",
        "",
        f"Frozen reference ({q.n_frozen:,} champion validation products, labels as they were): candidate AUC "
        f"{q.frozen_candidate_auc:.4f} / log loss {q.frozen_candidate_log_loss:.4f}, champion AUC "
        f"{q.frozen_champion_auc:.4f} / log loss {q.frozen_champion_log_loss:.4f}.",
    ]
    return lines


def _fmt_value(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.4f}"


def _fmt_bound(bound: float | None) -> str:
    return "—" if bound is None else f"{bound:g}"


def _reason(outcome: Outcome, results: list[CriterionResult], first_model: bool) -> str:
    word = _REASON_PREFIX[outcome]
    if outcome == "approve":
        applied = [r for r in results if r.verdict == "pass"]
        off = sum(r.verdict == "off" for r in results)
        if first_model:
            return f"{word}: first model of its type, absolute criteria pass"
        tail = f" ({off} off)" if off else ""
        return f"{word}: all {len(applied)} criteria pass{tail}"
    deciding = "; ".join(r.breach() for r in results if r.verdict == outcome)
    prefix = "first model of its type; " if first_model else ""
    return f"{word}: {prefix}{deciding}"


def evaluate_gate(
    candidate: Evidence,
    champion: Evidence | None,
    gate: GateConfig,
    label_quality: LabelQuality | None = None,
) -> GateDecision:
    """Decides whether the candidate replaces the champion of its package type.

    Args:
        candidate: The candidate's scores on this run's validation split and its training label stats.
        champion: The champion's scores on the same split and its training label stats; None if the
            package type has no champion yet (then only the absolute criteria apply).
        gate: Bounds of every criterion.
        label_quality: This run's labels against the champion's snapshot (`packwise.label_quality`);
            None when there is no champion or its snapshot is gone (the label-quality criteria are n/a).

    Returns:
        The decision: `reject` if any criterion is past its reject bound, else `review` if any is past
        its review bound, else `approve`.

    Raises:
        ValueError: If candidate and champion are of different package types.
    """
    if champion is not None and champion.package_type != candidate.package_type:
        raise ValueError(
            f"candidate is for {candidate.package_type!r} but champion for {champion.package_type!r}; "
            "compare models of the same package type"
        )
    results: list[CriterionResult] = []
    for criterion in CRITERIA:
        limit: Limit = getattr(gate, criterion.name)
        value = criterion.value(candidate, champion, gate)
        verdict = _verdict(value, limit, criterion.direction)
        results.append(
            CriterionResult(
                name=criterion.name,
                kind=criterion.kind,
                value=value,
                review=limit.review,
                reject=limit.reject,
                direction=criterion.direction,
                verdict=verdict,
            )
        )
    for quality in QUALITY_CRITERIA:
        limit = getattr(gate, quality.name)
        value = None if champion is None or label_quality is None else quality.value(label_quality)
        results.append(
            CriterionResult(
                name=quality.name,
                kind="comparative",
                value=value,
                review=limit.review,
                reject=limit.reject,
                direction=quality.direction,
                verdict=_verdict(value, limit, quality.direction),
            )
        )
    verdicts = {r.verdict for r in results}
    outcome: Outcome = "reject" if "reject" in verdicts else "review" if "review" in verdicts else "approve"
    reason = _reason(outcome, results, first_model=champion is None)
    if outcome == "approve" and not gate.auto_approve:
        # e.g. a run started by a trigger file: it may propose a champion, a person promotes it
        outcome = "review"
        reason = "review: " + reason.split(": ", 1)[1] + ", but gate.auto_approve is off (a person approves)"
    return GateDecision(
        package_type=candidate.package_type,
        outcome=outcome,
        status=STATUS_BY_OUTCOME[outcome],
        reason=reason,
        criteria=tuple(results),
        candidate=candidate,
        champion=champion,
        label_shift_metric=gate.label_shift_metric,
        label_quality=label_quality,
    )
