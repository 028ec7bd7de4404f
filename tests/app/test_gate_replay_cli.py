"""`packwise gate replay` over the 4 synthetic weeks: both policies' matrices, the criteria that differ,
and nothing written to the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packwise.replay import parse_weeks
from packwise_app.cli import app
from tests.conftest import make_config, seed

MODEL = {"num_boost_round": 40}


@pytest.fixture(scope="module")
def noisy_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded warehouse whose week 4 of mailer labels is 60% random; returns its config file."""
    root = tmp_path_factory.mktemp("replay")
    cfg = make_config(root / "state", model=MODEL)
    seed(
        cfg,
        seed=5,
        n_products=4_000,
        weeks=4,
        labels_per_week=800,
        label_noise={"package_type": "mailer", "week": 4, "fraction": 0.6},
    )
    path = root / "packwise.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "storage": {"root": str(root / "state")},
                "warehouse": {"path": str(cfg.warehouse.path)},
                "model": MODEL,
            }
        )
    )
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["gate", "replay", *args], env={"COLUMNS": "240"})
    return result.exit_code, result.output


def test_replay_prints_both_matrices_and_the_differing_criteria_and_leaves_the_registry_alone(
    noisy_project: Path,
) -> None:
    state = noisy_project.parent / "state"
    code, out = _run("--weeks", "1-4", "--config", str(noisy_project))
    assert code == 0, out
    assert "today policy" in out and "without label quality policy" in out
    assert "Where the policies differ" in out
    # the label-quality criteria decide week 4 of mailer under today's policy, and only there
    diff = out[out.index("Where the policies differ") :]
    assert "champion_disagreement" in diff
    diff_rows = [line for line in diff.splitlines() if "champion_disagreement" in line]
    assert diff_rows and all(" 4 " in row and "mailer" in row for row in diff_rows)
    # nothing registered: no MLflow store, no model artifacts; only the snapshots and the warehouse
    assert sorted(p.name for p in state.iterdir()) == ["snapshots", "warehouse.duckdb"]


def test_a_proposed_policy_file_is_compared_with_todays(noisy_project: Path, tmp_path: Path) -> None:
    proposed = tmp_path / "lenient.yaml"
    proposed.write_text(yaml.safe_dump({"gate": {"champion_disagreement": {"review": None, "reject": None}}}))
    code, out = _run("--weeks", "3-4", "--config", str(noisy_project), "--proposed", str(proposed))
    assert code == 0, out
    assert "proposed (lenient.yaml) policy" in out
    assert "champion_disagreement" in out[out.index("Where the policies differ") :]


def test_bad_weeks_are_refused_in_one_line(noisy_project: Path) -> None:
    code, out = _run("--weeks", "4-1", "--config", str(noisy_project))
    assert code == 2
    assert "--weeks '4-1': expected weeks like 1-4" in out
    assert parse_weeks("1-3,5") == [1, 2, 3, 5]
