"""The README keeps its promises: the two commands exist and the configuration reference is current."""

from __future__ import annotations

import re
from pathlib import Path

from packwise.config import config_reference

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_matches_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", readme, re.S)
    assert block is not None
    assert block.group(1) == config_reference(), "README.md's configuration reference is stale: run `make docs`"


def test_the_two_commands_are_documented_and_ci_runs_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: install$", makefile, re.M) and re.search(r"^test: install$", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
