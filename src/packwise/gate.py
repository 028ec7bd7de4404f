"""The promotion gate: may a candidate replace the champion of its package type?

Both models are scored on this run's validation split, so their scores are comparable; the label
statistics are of each model's training labels. Every criterion is a `GateConfig` field of the same name
with optional `review` and `reject` bounds:

- absolute criteria bound the candidate's own scores and always apply;
- comparative criteria bound how much worse than the champion the candidate is, and how far its training
  labels moved; they apply only when a champion exists.

A value exactly at a bound passes it. Any reject rejects; otherwise any review sends the candidate to a
person; otherwise it is approved. The decision is plain data, passed between pipeline tasks as JSON.

The criteria, the evidence and each criterion's verdict are in `packwise.gate_criteria`; this module
decides and reports. It imports nothing heavy (no numpy, scikit-learn or registry client): it runs in a light task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, field_serializer

from packwise.gate_criteria import (
    CRITERIA,
    MEASURES,
    QUALITY_CRITERIA,
    Direction,
    Evidence,
    Kind,
    Verdict,
    verdict_of,
)
from packwise.label_quality import LabelQuality

if TYPE_CHECKING:
    from packwise.config import GateConfig, Limit

Outcome = Literal["approve", "review", "reject"]

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
                f"| `{c.name}` | {MEASURES.get(c.name, c.kind)} | {review} | {reject} | "
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
    measured: list[tuple[str, Kind, Direction, float | None]] = [
        (c.name, c.kind, c.direction, c.value(candidate, champion, gate)) for c in CRITERIA
    ]
    measured += [
        (
            q.name,
            "comparative",
            q.direction,
            None if champion is None or label_quality is None else q.value(label_quality),
        )
        for q in QUALITY_CRITERIA
    ]
    results: list[CriterionResult] = []
    for name, kind, direction, value in measured:
        limit: Limit = getattr(gate, name)
        results.append(
            CriterionResult(
                name=name,
                kind=kind,
                value=value,
                review=limit.review,
                reject=limit.reject,
                direction=direction,
                verdict=verdict_of(value, limit, direction),
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


__all__ = [
    "CRITERIA",
    "QUALITY_CRITERIA",
    "STATUS_BY_OUTCOME",
    "CriterionResult",
    "Evidence",
    "GateDecision",
    "Outcome",
    "evaluate_gate",
]
