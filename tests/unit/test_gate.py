"""The promotion gate: every criterion, the outcome, the decision's JSON and its report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from packwise.config import GateConfig, Limit
from packwise.errors import DataValidationError
from packwise.evaluation import jensen_shannon
from packwise.gate import CRITERIA, QUALITY_CRITERIA, STATUS_BY_OUTCOME, Evidence, GateDecision, evaluate_gate
from packwise.label_quality import LabelQuality

NAMES = [c.name for c in (*CRITERIA, *QUALITY_CRITERIA)]
ABSOLUTE = {"min_auc", "min_pr_auc", "max_log_loss"}

CHAMPION = Evidence(
    package_type="bag", version=3, auc=0.90, pr_auc=0.70, log_loss=0.30, label_count=1000, positive_rate=0.30
)
CANDIDATE = Evidence(
    package_type="bag", version=None, auc=0.91, pr_auc=0.72, log_loss=0.29, label_count=1100, positive_rate=0.30
)


def replace(evidence: Evidence, **change: Any) -> Evidence:
    """A validated copy with some fields changed (model_copy would skip the evidence checks)."""
    return Evidence.model_validate({**evidence.model_dump(), **change})


# Explicit bounds, so these tests do not move when the shipped defaults are tuned.
STRICT = GateConfig(
    auc_drop_abs=Limit(review=0.005, reject=0.02), log_loss_increase_abs=Limit(review=0.01, reject=0.05)
)


def only(name: str, limit: Limit, **extra: Any) -> GateConfig:
    """A gate with every criterion off except `name`."""
    limits: dict[str, Any] = {n: Limit() for n in NAMES}
    limits[name] = limit
    return GateConfig(**limits, **extra)


# criterion, its limit, the changes to (candidate, champion) and the verdict they must get.
# Each criterion is tested with every other criterion off, so it triggers on its own.
CASES: list[tuple[str, Limit, dict[str, Any], dict[str, Any], str]] = [
    ("min_auc", Limit(review=0.85, reject=0.80), {"auc": 0.85}, {}, "pass"),
    ("min_auc", Limit(review=0.85, reject=0.80), {"auc": 0.83}, {}, "review"),
    ("min_auc", Limit(review=0.85, reject=0.80), {"auc": 0.80}, {}, "review"),
    ("min_auc", Limit(review=0.85, reject=0.80), {"auc": 0.79}, {}, "reject"),
    ("min_pr_auc", Limit(review=0.6, reject=0.5), {"pr_auc": 0.6}, {}, "pass"),
    ("min_pr_auc", Limit(review=0.6, reject=0.5), {"pr_auc": 0.55}, {}, "review"),
    ("min_pr_auc", Limit(review=0.6, reject=0.5), {"pr_auc": 0.45}, {}, "reject"),
    ("max_log_loss", Limit(review=0.4, reject=0.6), {"log_loss": 0.4}, {}, "pass"),
    ("max_log_loss", Limit(review=0.4, reject=0.6), {"log_loss": 0.5}, {}, "review"),
    ("max_log_loss", Limit(review=0.4, reject=0.6), {"log_loss": 0.6}, {}, "review"),
    ("max_log_loss", Limit(review=0.4, reject=0.6), {"log_loss": 0.7}, {}, "reject"),
    # 0.90 - 0.895 is 0.0050000000000000044 in floats: still exactly at the bound.
    ("auc_drop_abs", Limit(review=0.005, reject=0.02), {"auc": 0.895}, {}, "pass"),
    ("auc_drop_abs", Limit(review=0.005, reject=0.02), {"auc": 0.89}, {}, "review"),
    ("auc_drop_abs", Limit(review=0.005, reject=0.02), {"auc": 0.88}, {}, "review"),
    ("auc_drop_abs", Limit(review=0.005, reject=0.02), {"auc": 0.87}, {}, "reject"),
    ("auc_drop_rel", Limit(review=0.01, reject=0.03), {"auc": 0.891}, {}, "pass"),
    ("auc_drop_rel", Limit(review=0.01, reject=0.03), {"auc": 0.88}, {}, "review"),
    ("auc_drop_rel", Limit(review=0.01, reject=0.03), {"auc": 0.85}, {}, "reject"),
    ("pr_auc_drop_abs", Limit(review=0.01, reject=0.04), {"pr_auc": 0.69}, {}, "pass"),
    ("pr_auc_drop_abs", Limit(review=0.01, reject=0.04), {"pr_auc": 0.67}, {}, "review"),
    ("pr_auc_drop_abs", Limit(review=0.01, reject=0.04), {"pr_auc": 0.65}, {}, "reject"),
    ("pr_auc_drop_rel", Limit(review=0.02, reject=0.06), {"pr_auc": 0.49}, {"pr_auc": 0.5}, "pass"),
    ("pr_auc_drop_rel", Limit(review=0.02, reject=0.06), {"pr_auc": 0.48}, {"pr_auc": 0.5}, "review"),
    ("pr_auc_drop_rel", Limit(review=0.02, reject=0.06), {"pr_auc": 0.45}, {"pr_auc": 0.5}, "reject"),
    ("log_loss_increase_abs", Limit(review=0.01, reject=0.05), {"log_loss": 0.31}, {}, "pass"),
    ("log_loss_increase_abs", Limit(review=0.01, reject=0.05), {"log_loss": 0.33}, {}, "review"),
    ("log_loss_increase_abs", Limit(review=0.01, reject=0.05), {"log_loss": 0.36}, {}, "reject"),
    ("log_loss_increase_rel", Limit(review=0.05, reject=0.15), {"log_loss": 0.42}, {"log_loss": 0.4}, "pass"),
    ("log_loss_increase_rel", Limit(review=0.05, reject=0.15), {"log_loss": 0.44}, {"log_loss": 0.4}, "review"),
    ("log_loss_increase_rel", Limit(review=0.05, reject=0.15), {"log_loss": 0.50}, {"log_loss": 0.4}, "reject"),
    ("label_count_min_fraction", Limit(review=0.9, reject=0.5), {"label_count": 900}, {}, "pass"),
    ("label_count_min_fraction", Limit(review=0.9, reject=0.5), {"label_count": 700}, {}, "review"),
    ("label_count_min_fraction", Limit(review=0.9, reject=0.5), {"label_count": 500}, {}, "review"),
    ("label_count_min_fraction", Limit(review=0.9, reject=0.5), {"label_count": 400}, {}, "reject"),
    ("label_count_max_fraction", Limit(review=2.0, reject=5.0), {"label_count": 2000}, {}, "pass"),
    ("label_count_max_fraction", Limit(review=2.0, reject=5.0), {"label_count": 3000}, {}, "review"),
    ("label_count_max_fraction", Limit(review=2.0, reject=5.0), {"label_count": 6000}, {}, "reject"),
]


@pytest.mark.parametrize(("name", "limit", "cand", "champ", "verdict"), CASES)
def test_each_criterion_triggers_on_its_own(
    name: str, limit: Limit, cand: dict[str, Any], champ: dict[str, Any], verdict: str
) -> None:
    decision = evaluate_gate(replace(CANDIDATE, **cand), replace(CHAMPION, **champ), only(name, limit))

    result = decision.criterion(name)
    assert result.verdict == verdict, result
    assert result.review == limit.review and result.reject == limit.reject
    assert all(r.verdict == "off" for r in decision.criteria if r.name != name)
    expected_outcome = {"pass": "approve", "review": "review", "reject": "reject"}[verdict]
    assert decision.outcome == expected_outcome
    assert decision.status == STATUS_BY_OUTCOME[expected_outcome]
    if verdict != "pass":
        assert name in decision.reason
        assert f"{verdict} bound" in decision.reason


@pytest.mark.parametrize(("cand_rate", "verdict"), [(0.31, "pass"), (0.32, "pass"), (0.33, "review"), (0.40, "reject")])
def test_label_shift_l_infinity(cand_rate: float, verdict: str) -> None:
    # champion's training labels: 30% positive; the bound 0.02 is met exactly at 32%.
    gate = only("label_shift", Limit(review=0.02, reject=0.05), label_shift_metric="l_infinity")
    result = evaluate_gate(replace(CANDIDATE, positive_rate=cand_rate), CHAMPION, gate).criterion("label_shift")
    assert result.value == pytest.approx(abs(cand_rate - 0.30))
    assert result.verdict == verdict


def test_label_shift_jensen_shannon_against_champion_training_labels() -> None:
    gate = only("label_shift", Limit(review=0.003, reject=0.02))
    # Scores differ wildly but do not matter here: only the training positive rates do.
    cand = replace(CANDIDATE, positive_rate=0.45, auc=0.99)
    decision = evaluate_gate(cand, CHAMPION, gate)
    expected = jensen_shannon([0.55, 0.45], [0.70, 0.30])
    assert decision.criterion("label_shift").value == pytest.approx(expected)
    assert 0.003 < expected < 0.02
    assert decision.outcome == "review"
    assert decision.label_shift_metric == "jensen_shannon"

    far = evaluate_gate(replace(CANDIDATE, positive_rate=0.60), CHAMPION, gate)
    assert far.outcome == "reject"
    assert far.reason.startswith("rejected: label_shift ")
    assert "> reject bound 0.02" in far.reason


def test_reject_wins_over_review() -> None:
    gate = STRICT
    # auc drop 0.01: review; log loss increase 0.06: reject.
    cand = replace(CANDIDATE, auc=0.89, log_loss=0.36)
    decision = evaluate_gate(cand, CHAMPION, gate)
    assert decision.criterion("auc_drop_abs").verdict == "review"
    assert decision.criterion("log_loss_increase_abs").verdict == "reject"
    assert decision.outcome == "reject"
    assert decision.status == "Rejected"
    assert decision.reason.startswith("rejected: ")
    assert "log_loss_increase_abs 0.0600 > reject bound 0.05" in decision.reason
    assert "auc_drop_abs" not in decision.reason  # the reason names what decided


def test_review_when_nothing_rejects() -> None:
    decision = evaluate_gate(replace(CANDIDATE, auc=0.89), CHAMPION, STRICT)
    assert decision.outcome == "review"
    assert decision.status == "PendingManualApproval"
    assert decision.reason == "review: auc_drop_abs 0.0100 > review bound 0.005"
    assert not decision.approved


def test_a_value_past_both_bounds_is_rejected_not_reviewed() -> None:
    decision = evaluate_gate(replace(CANDIDATE, auc=0.80), CHAMPION, GateConfig())
    assert decision.criterion("auc_drop_abs").verdict == "reject"


CLEAN_QUALITY = LabelQuality(
    package_type="bag",
    champion_fingerprint="ab" * 32,
    n_common=3000,
    n_changed=6,
    n_new=900,
    n_new_contradicted=30,
    n_reference=600,
    n_reference_contradicted=19,
    confident=0.9,
    n_frozen=600,
    frozen_candidate_auc=0.905,
    frozen_champion_auc=0.90,
    frozen_candidate_log_loss=0.30,
    frozen_champion_log_loss=0.305,
)


def test_better_candidate_is_approved_on_defaults() -> None:
    decision = evaluate_gate(CANDIDATE, CHAMPION, GateConfig(), CLEAN_QUALITY)
    assert decision.outcome == "approve"
    assert decision.status == "Approved"
    assert decision.approved
    assert decision.reason == "approved: all 16 criteria pass"
    assert [r.name for r in decision.criteria] == NAMES
    assert all(r.verdict == "pass" for r in decision.criteria)
    # improvements are negative drops
    assert decision.criterion("auc_drop_abs").value == pytest.approx(-0.01)
    assert decision.criterion("log_loss_increase_rel").value == pytest.approx(-0.01 / 0.30)
    assert decision.criterion("label_count_min_fraction").value == pytest.approx(1.1)


def test_off_criteria_are_listed_but_never_decide() -> None:
    gate = GateConfig(auc_drop_abs=Limit())
    decision = evaluate_gate(replace(CANDIDATE, auc=0.895), CHAMPION, gate)  # 0.005 drop: rel passes
    off = decision.criterion("auc_drop_abs")
    assert off.verdict == "off"
    assert off.value == pytest.approx(0.005)  # still measured, for the report
    assert decision.outcome == "approve"
    assert decision.reason == "approved: all 11 criteria pass (1 off)"
    assert "`auc_drop_abs`" in decision.report_markdown()


def test_first_model_only_absolute_criteria_apply() -> None:
    # Drops, shift and label counts would all fail against any champion; without one they do not apply.
    cand = replace(CANDIDATE, auc=0.81, pr_auc=0.51, log_loss=0.59, label_count=3, positive_rate=0.99)
    decision = evaluate_gate(cand, None, GateConfig())
    assert decision.outcome == "approve"
    assert decision.reason == "approved: first model of its type, absolute criteria pass"
    for r in decision.criteria:
        if r.name in ABSOLUTE:
            assert (r.kind, r.verdict) == ("absolute", "pass")
        else:
            assert (r.kind, r.verdict, r.value) == ("comparative", "n/a", None)
    report = decision.report_markdown()
    assert "first model of its type" in report
    assert "only the absolute criteria apply" in report


def test_first_model_is_still_rejected_by_absolute_criteria() -> None:
    decision = evaluate_gate(replace(CANDIDATE, auc=0.70), None, GateConfig())
    assert decision.outcome == "reject"
    assert decision.reason == "rejected: first model of its type; min_auc 0.7000 < reject bound 0.8"


def test_zero_denominators_do_not_pass_silently() -> None:
    champ = replace(CHAMPION, log_loss=0.0, label_count=0)
    decision = evaluate_gate(replace(CANDIDATE, log_loss=0.01), champ, GateConfig())
    assert decision.criterion("log_loss_increase_rel").value == math.inf
    assert decision.criterion("log_loss_increase_rel").verdict == "reject"
    assert decision.criterion("label_count_max_fraction").value == math.inf
    assert decision.criterion("label_count_max_fraction").verdict == "review"
    # Infinity survives strict JSON (as a string) and comes back.
    text = json.dumps(decision.to_dict(), allow_nan=False)
    assert GateDecision.from_dict(json.loads(text)) == decision
    assert "∞" in decision.report_markdown()


def test_equal_zero_scores_are_no_change() -> None:
    champ = replace(CHAMPION, log_loss=0.0)
    decision = evaluate_gate(replace(CANDIDATE, log_loss=0.0), champ, GateConfig())
    assert decision.criterion("log_loss_increase_rel").value == 0.0


@pytest.mark.parametrize("champion", [CHAMPION, None])
def test_decision_round_trips_through_strict_json(champion: Evidence | None) -> None:
    decision = evaluate_gate(replace(CANDIDATE, auc=0.89), champion, GateConfig(label_shift_metric="l_infinity"))
    text = json.dumps(decision.to_dict(), allow_nan=False)
    back = GateDecision.from_dict(json.loads(text))
    assert back == decision
    assert back.report_markdown() == decision.report_markdown()


def test_report_lists_every_criterion_bound_value_and_verdict() -> None:
    decision = evaluate_gate(replace(CANDIDATE, auc=0.89, log_loss=0.36), CHAMPION, STRICT, CLEAN_QUALITY)
    report = decision.report_markdown()
    assert report.startswith("# Gate decision: `bag` — rejected")
    assert "Rejected" in report and decision.reason.partition(": ")[2] in report
    rows = {line.split("|")[1].strip().strip("`"): line for line in report.splitlines() if line.startswith("| `")}
    assert set(rows) == set(NAMES)
    for r in decision.criteria:
        row = rows[r.name]
        for bound in (r.review, r.reject):
            if bound is not None:
                assert f"{bound:g}" in row
        assert r.value is not None and f"{r.value:.4f}" in row
        assert r.verdict in row
    assert "❌ reject" in rows["log_loss_increase_abs"]
    assert "⚠️ review" in rows["auc_drop_abs"]
    assert "✅ pass" in rows["min_auc"]
    # the candidate vs champion table
    assert "Champion v3" in report
    assert "| ROC AUC (validation) | 0.8900 | 0.9000 |" in report
    assert "| Training labels | 1,100 | 1,000 |" in report


def test_every_gate_config_limit_is_a_criterion() -> None:
    gate = GateConfig()
    limits = {name for name in type(gate).model_fields if isinstance(getattr(gate, name), Limit)}
    assert set(NAMES) == limits
    # lower bounds are the ones GateConfig orders the other way round
    assert {c.name for c in CRITERIA if c.direction == "min"} == {
        "min_auc",
        "min_pr_auc",
        "label_count_min_fraction",
    }
    assert {c.name for c in CRITERIA if c.kind == "absolute"} == ABSOLUTE


def test_label_quality_criteria_are_na_without_evidence_and_judge_it_when_given() -> None:
    without = evaluate_gate(CANDIDATE, CHAMPION, GateConfig())
    assert {without.criterion(c.name).verdict for c in QUALITY_CRITERIA} == {"n/a"}
    assert without.approved
    # a week whose new labels are partly random: the champion contradicts many more of them
    noisy = CLEAN_QUALITY.model_copy(update={"n_new_contradicted": 120, "frozen_candidate_auc": 0.86})
    decision = evaluate_gate(CANDIDATE, CHAMPION, GateConfig(), noisy)
    assert decision.outcome == "reject"
    assert decision.criterion("champion_disagreement").value == pytest.approx(120 / 900 - 19 / 600)
    assert decision.criterion("champion_disagreement").verdict == "reject"
    assert decision.criterion("frozen_auc_drop").verdict == "reject"
    assert "champion_disagreement" in decision.reason
    report = decision.report_markdown()
    assert "## Label quality against the champion's snapshot" in report
    assert "| New labels the champion confidently contradicts | 120 of 900 | 0.1333 |" in report
    again = GateDecision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again == decision


def test_rewritten_past_labels_trip_label_churn() -> None:
    rewritten = CLEAN_QUALITY.model_copy(update={"n_changed": 450})
    decision = evaluate_gate(CANDIDATE, CHAMPION, GateConfig(), rewritten)
    assert decision.criterion("label_churn").value == pytest.approx(0.15)
    assert decision.criterion("label_churn").verdict == "reject"


def test_status_strings() -> None:
    assert STATUS_BY_OUTCOME == {"approve": "Approved", "reject": "Rejected", "review": "PendingManualApproval"}


def test_mismatched_package_types_are_refused() -> None:
    with pytest.raises(ValueError, match="same package type"):
        evaluate_gate(CANDIDATE, replace(CHAMPION, package_type="box"), GateConfig())


@pytest.mark.parametrize(
    "change", [{"auc": float("nan")}, {"pr_auc": 1.2}, {"log_loss": math.inf}, {"label_count": -1}]
)
def test_evidence_refuses_impossible_values(change: dict[str, Any]) -> None:
    with pytest.raises(DataValidationError, match="gate evidence for bag"):
        replace(CANDIDATE, **change)


def test_gate_imports_nothing_heavy() -> None:
    code = (
        "import sys, packwise.gate; "
        "heavy = [m for m in ('numpy', 'sklearn', 'scipy', 'pandas', 'xgboost') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
