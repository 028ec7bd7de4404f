"""The CLI's progress when its output is not a terminal (CliRunner): plain lines, and nothing with --quiet.

One small catalogue through `packwise seed`, `packwise train` and `packwise infer` (kfp.local, subprocess
runner): the tasks' progress markers travel from the task processes to the CLI while they run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packwise_app.cli import app

pytestmark = pytest.mark.pipeline


def test_seed_train_and_infer_print_plain_progress_lines_and_quiet_prints_nothing(tmp_path: Path) -> None:
    config = tmp_path / "packwise.yaml"
    settings = {
        "storage": {"root": str(tmp_path / "state")},
        "warehouse": {"path": str(tmp_path / "w.duckdb")},
        "inference": {"shard_target_rows": 1_500, "batch_rows": 1_024},
    }
    config.write_text(yaml.safe_dump(settings))
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "160"})
        assert result.exit_code == 0, result.output
        return result.output

    out = invoke("seed", "--products", "3000", "--weeks", "2", "--labels-per-week", "400")
    assert "  generating products 3,000/3,000 products (100%)" in out.splitlines()
    assert "  writing labels" in out and "\x1b[" not in out

    lines = invoke("train", "--week", "1").splitlines()
    assert any(line.startswith("  progress  train (bag) ") and line.endswith("rounds (100%)") for line in lines)
    assert any(line.startswith("  succeeded train (bag)") for line in lines)

    lines = invoke("infer", "--mode", "monthly").splitlines()
    assert "  progress  shard-products 2/2 shards (100%)" in lines
    assert "  progress  score-shard (shard-00000) 1,500/1,500 rows (100%)" in lines
    assert "  progress  load-predictions: inserting" in lines
    assert any(line.startswith("  succeeded load-predictions") for line in lines)
    assert any("products scored, loaded" in line for line in lines)  # the summary table, after the progress

    assert invoke("infer", "--mode", "monthly", "--quiet") == ""
