"""`packwise seed` prints a summary table (not a repr), and nothing with --quiet."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from packwise_app.cli import app


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "packwise.yaml"
    settings = {"storage": {"root": str(tmp_path / "state")}, "warehouse": {"path": str(tmp_path / "w.duckdb")}}
    path.write_text(yaml.safe_dump(settings))
    return path


def test_seed_prints_a_table_per_package_type(tmp_path: Path) -> None:
    args = ["seed", "--config", str(_config(tmp_path)), "--products", "2000", "--weeks", "1"]
    result = CliRunner().invoke(app, [*args, "--labels-per-week", "300"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2,000 products" in result.output and "SeedSummary(" not in result.output
    for package_type in ("own_container", "bag", "mailer", "box"):
        assert package_type in result.output
    assert "positive rate" in result.output and "%" in result.output


def test_seed_quiet_prints_nothing_and_still_seeds(tmp_path: Path) -> None:
    args = ["seed", "--config", str(_config(tmp_path)), "--products", "1000", "--weeks", "1", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--labels-per-week", "200"])
    assert result.exit_code == 0 and result.output == ""
    assert (tmp_path / "w.duckdb").exists()
