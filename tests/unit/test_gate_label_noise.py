"""The gate on real trained models: label noise that keeps the positive rate is caught, clean weeks pass.

Each scenario seeds a small warehouse, then replays the training steps and the gate (the packwise step
functions, no KFP) over weeks 3 and 4: week 3's candidates become the in-memory champions, week 4's are
judged against them. Scenarios are cached per module so each is trained once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from packwise.config import GateConfig
from packwise.replay import ReplayResult, replay_gate
from tests.conftest import make_config, seed

SCENARIO_DATA = {"n_products": 6_000, "weeks": 4, "labels_per_week": 1_200}
MODEL = {"num_boost_round": 80}
TYPES = ("own_container", "bag", "mailer", "box")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ReplayResult]:
    cache: dict[tuple[Any, ...], ReplayResult] = {}

    def run(seed_value: int, **knobs: Any) -> ReplayResult:
        key = (seed_value, tuple(sorted((k, tuple(sorted(v.items()))) for k, v in knobs.items())))
        if key not in cache:
            root = tmp_path_factory.mktemp(f"scenario-{seed_value}")
            cfg = make_config(root, model=MODEL)
            seed(cfg, seed=seed_value, **SCENARIO_DATA, **knobs)
            cache[key] = replay_gate(cfg, [3, 4], {"default": GateConfig()}, workdir=root / "replay")
        return cache[key]

    return run


@pytest.mark.parametrize("seed_value", [1, 2])
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_a_noisy_week_is_never_approved_and_the_catching_criterion_is_named(
    scenario: Callable[..., ReplayResult], seed_value: int, fraction: float
) -> None:
    result = scenario(seed_value, label_noise={"package_type": "mailer", "week": 4, "fraction": fraction})
    decision = result.decisions["default"][4]["mailer"]
    assert decision.status in {"Rejected", "PendingManualApproval"}, decision.reason
    caught = [c.name for c in decision.criteria if c.verdict in {"reject", "review"}]
    assert "champion_disagreement" in caught
    deciding = [c.name for c in decision.criteria if c.verdict == decision.outcome]
    assert deciding and all(name in decision.reason for name in deciding)
    # the positive rate is kept, so the label-shift criterion alone would have let it through
    assert decision.criterion("label_shift").verdict == "pass"
    assert "champion_disagreement" in decision.report_markdown()
    # the other types' week 4 is clean and still approved
    for other in TYPES:
        if other != "mailer":
            assert result.decisions["default"][4][other].approved, result.decisions["default"][4][other].reason


@pytest.mark.parametrize("seed_value", [1, 2])
def test_a_clean_week_with_more_labels_is_approved(scenario: Callable[..., ReplayResult], seed_value: int) -> None:
    result = scenario(seed_value)
    for package_type in TYPES:
        decision = result.decisions["default"][4][package_type]
        assert decision.champion is not None and decision.label_quality is not None
        assert decision.candidate.label_count > decision.champion.label_count
        assert decision.approved, decision.reason


def test_rewritten_past_labels_are_caught_by_label_churn(scenario: Callable[..., ReplayResult]) -> None:
    result = scenario(1, rewrite={"package_type": "bag", "week": 4, "fraction": 0.2})
    decision = result.decisions["default"][4]["bag"]
    assert decision.status == "Rejected"
    assert decision.criterion("label_churn").verdict == "reject"
    assert decision.label_quality is not None and decision.label_quality.churn_rate > 0.05
    assert result.decisions["default"][4]["mailer"].approved


def test_replay_leaves_the_registry_and_storage_outside_snapshots_untouched(
    scenario: Callable[..., ReplayResult], tmp_path: Path
) -> None:
    cfg = make_config(tmp_path / "state", model=MODEL)
    seed(cfg, seed=3, n_products=2_000, weeks=2, labels_per_week=400)
    replay_gate(cfg, [1, 2], {"default": GateConfig()})
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["snapshots", "warehouse.duckdb"]
