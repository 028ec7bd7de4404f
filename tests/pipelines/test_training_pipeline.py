"""The weekly training DAG end to end through kfp.local (subprocess runner), week after week.

One seeded warehouse, one registry and one task cache for the whole module, as on a real laptop:
week 1 creates the first champions, week 2 is gated against them, a repeat of week 2 is all cache hits,
week 3 carries corrupted mailer labels, and week 4 fails in one evaluation and is then resumed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from packwise.config import PackwiseConfig
from packwise.registry import Status, open_registry
from packwise.run_summary import read_summary
from packwise_pipelines.local import LocalRun, training_run
from tests.conftest import make_config, seed

pytestmark = pytest.mark.pipeline

TYPES = ["own_container", "bag", "mailer", "box"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    config = make_config(tmp_path_factory.mktemp("training") / "state")
    seed(
        config,
        seed=11,
        n_products=12_000,
        weeks=4,
        labels_per_week=3_000,
        corrupt={"package_type": "mailer", "week": 3, "fraction": 1.0},
    )
    return config


def _run(cfg: PackwiseConfig, week: int, run_id: str) -> tuple[LocalRun, dict[str, Any]]:
    run = training_run(cfg, week, run_id=run_id)
    summary = read_summary(cfg.storage.root, run.run_id)
    assert summary is not None, f"no summary written; see {run.log_path}"
    return run, summary


def _by_type(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["package_type"]: row for row in summary["package_types"]}


def _executed(run: LocalRun) -> list[str]:
    return sorted(e.label for e in run.events if e.state in {"succeeded", "failed"})


def _cached(run: LocalRun) -> list[str]:
    return sorted(e.task for e in run.events if e.state == "cached")


def test_week1_every_type_gets_its_first_approved_model(cfg: PackwiseConfig) -> None:
    run, summary = _run(cfg, 1, "week1")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    rows = _by_type(summary)
    assert set(rows) == set(TYPES)
    registry = open_registry(cfg.registry)
    for package_type, row in rows.items():
        assert row["decision"] == "Approved", row
        assert row["candidate"]["auc"] >= 0.85, row
        champion = registry.champion(package_type)
        assert champion is not None and champion.version == row["version"]
        assert "no champion" in champion.gate_report.lower() or "first model" in champion.gate_report.lower()
        assert champion.run_id == run.run_id == "week1"  # the version names the run that made it


def test_week2_candidates_are_gated_against_week1_champions(cfg: PackwiseConfig) -> None:
    registry = open_registry(cfg.registry)
    week1 = {t: registry.champion(t) for t in TYPES}
    run, summary = _run(cfg, 2, "week2")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    for package_type, row in _by_type(summary).items():
        version = registry.get(package_type, row["version"])
        champion_before = week1[package_type]
        assert champion_before is not None
        # the champion was re-scored on week 2's validation split, not copied from week 1
        assert version.metrics["champion_auc"] != pytest.approx(champion_before.metrics["auc"], abs=1e-12)
        assert f"v{champion_before.version}" in version.gate_report
        for criterion in ("auc_drop_abs", "label_shift", "label_count_min_fraction"):
            assert criterion in version.gate_report
        assert row["decision"] in {s.value for s in Status}
        assert row["reason"], "every decision states why"
        if row["decision"] != "Approved":
            assert registry.champion(package_type) == champion_before


def test_same_week_again_is_all_cache_hits_after_the_extract(cfg: PackwiseConfig) -> None:
    registry = open_registry(cfg.registry)
    versions_before = len(registry.list_versions())
    run, _ = _run(cfg, 2, "week2-again")
    assert run.succeeded
    executed = _executed(run)
    assert [t for t in executed if not t.startswith(("extract", "notify"))] == [], executed
    assert len(_cached(run)) >= 3 + 3 * len(TYPES)
    assert len(registry.list_versions()) == versions_before
    # the versions still name the run that registered them, not this all-cached repeat
    assert {v.run_id for v in registry.list_versions() if v.candidate_key} <= {"week1", "week2"}


def test_corrupted_labels_reject_only_that_type(cfg: PackwiseConfig) -> None:
    registry = open_registry(cfg.registry)
    mailer_champion = registry.champion("mailer")
    run, summary = _run(cfg, 3, "week3")
    assert run.succeeded
    rows = _by_type(summary)
    assert rows["mailer"]["decision"] == "Rejected", rows["mailer"]
    assert registry.champion("mailer") == mailer_champion
    for package_type in ("own_container", "bag", "box"):
        assert rows[package_type]["decision"] == "Approved", rows[package_type]
        assert registry.champion(package_type).version == rows[package_type]["version"]  # type: ignore[union-attr]


def test_failed_evaluation_resumes_from_the_failed_task(cfg: PackwiseConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKWISE_FAIL_TASK", "evaluate/mailer")
    failed, summary = _run(cfg, 4, "week4-fails")
    assert not failed.succeeded
    rows = _by_type(summary)
    assert rows["mailer"]["decision"] == "failed"
    for package_type in ("own_container", "bag", "box"):
        assert rows[package_type]["decision"] != "failed", "one type failing never blocks the others"

    monkeypatch.delenv("PACKWISE_FAIL_TASK")
    resumed, summary = _run(cfg, 4, "week4-resumed")
    assert resumed.succeeded, resumed.log_path.read_text()[-3000:]
    executed = [t for t in _executed(resumed) if not t.startswith(("extract", "notify"))]
    # only mailer's evaluation and what follows it ran again; its training came from the cache
    assert executed == ["compare (mailer)", "evaluate (mailer)", "register (mailer)"], executed
    assert _by_type(summary)["mailer"]["decision"] != "failed"
    assert not os.environ.get("PACKWISE_FAIL_TASK")
    assert Path(resumed.log_path).exists()
