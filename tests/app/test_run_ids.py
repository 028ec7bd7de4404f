"""Run ids name files under storage.root: one pattern, checked at every entry point, before anything is written.

`--run-id ../../../escape` once wrote run records and logs outside storage.root; a trigger file's
`params.run_id` reached the same code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packwise.errors import ConfigError
from packwise.lineage import RUN_ID_PATTERN, check_run_id, effective_run_id, read_run_record, write_run_record
from packwise_app.cli import app
from packwise_app.cluster import validate_params
from packwise_app.trigger import TriggerError, parse_trigger
from tests.conftest import make_config

BAD = ["../../../escape", "a/b", "..", "x..y", ".hidden", "-flag", "", "a" * 64, "run id", "run\nid", "P[/red]X"]
GOOD = ["training-20261201-221500-a1b2c3", "0b1e3f2a-6c1d-4c5e-9f7a-2b3c4d5e6f70", "w5.retry_2", "a" * 63]


@pytest.mark.parametrize("run_id", GOOD)
def test_plain_run_ids_and_kfp_job_ids_pass(run_id: str) -> None:
    assert check_run_id(run_id) == run_id
    assert effective_run_id(run_id, "job") == run_id


@pytest.mark.parametrize("run_id", BAD)
def test_a_run_id_that_could_leave_its_directory_is_refused_with_the_pattern(run_id: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_run_id(run_id, "--run-id")
    message = str(err.value)
    assert "\n" not in message.replace(repr(run_id), "")
    assert message.startswith("--run-id ") and RUN_ID_PATTERN in message


def test_the_component_entry_checks_the_run_id_and_falls_back_to_the_job_id() -> None:
    assert effective_run_id("  ", "0b1e3f2a-6c1d") == "0b1e3f2a-6c1d"
    with pytest.raises(ConfigError, match="not a valid run id"):
        effective_run_id("../../../escape", "job")
    with pytest.raises(ConfigError, match="not a valid run id"):
        effective_run_id("", "../job")


def test_run_records_refuse_names_outside_the_runs_directory(tmp_path: Path) -> None:
    root = tmp_path / "state"
    for name in ("../../escape", "../escape.summary", "/etc/passwd"):
        with pytest.raises(ConfigError):
            write_run_record(root, name, {"x": 1})
        with pytest.raises(ConfigError):
            read_run_record(root, name)
    assert not tmp_path.joinpath("escape.json").exists()
    assert list(tmp_path.rglob("*.json")) == []
    assert write_run_record(root, "ok-run.summary", {"x": 1}) == root / "runs" / "ok-run.summary.json"


@pytest.mark.parametrize("command", [["train", "--week", "1"], ["infer", "--mode", "daily"]])
def test_the_cli_refuses_a_traversing_run_id_before_writing_anything(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "a" / "b" / "c" / "state"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(root)}, "warehouse": {"path": str(root / "wh.duckdb")}}))
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [*command, "--config", str(config), "--run-id", "../../../escape"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--run-id '../../../escape' is not a valid run id" in lines[0]
    assert RUN_ID_PATTERN in result.output.replace("\n", "")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere, inside storage.root or out


def test_run_parameters_of_submit_and_schedule_refuse_a_bad_run_id() -> None:
    with pytest.raises(ConfigError, match=r"^params: run_id: value '\.\./x' is not a valid run id"):
        validate_params("training", {"week": 2, "run_id": "../x"})
    assert validate_params("training", {"week": 2, "run_id": ""})["run_id"] == ""
    assert validate_params("inference", {"run_id": "daily-1"})["run_id"] == "daily-1"


def test_a_trigger_files_run_id_is_refused(tmp_path: Path) -> None:
    base = make_config(tmp_path / "state")
    body = yaml.safe_dump({"pipeline": "training", "params": {"week": 2, "run_id": "../../../escape"}}).encode()
    with pytest.raises(TriggerError, match=r"params: run_id: value '\.\./\.\./\.\./escape' is not a valid run id"):
        parse_trigger(body, "triggers/evil.yaml", base)


def test_submit_refuses_a_bad_run_id_before_connecting(tmp_path: Path) -> None:
    # cluster.host points nowhere: reaching it would be a different error
    result = CliRunner().invoke(
        app, ["submit", "training", "--week", "2", "--param", "run_id=../x", "--set", "cluster.host=http://127.0.0.1:9"]
    )
    assert result.exit_code == 2, result.output
    assert "submit: run_id: value '../x' is not a valid run id" in result.output.replace("\n", "")
