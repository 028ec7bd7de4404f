"""Installing Packwise (`make install`, `pip install -e .`) prints no setuptools deprecation warnings."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_licence_is_an_spdx_expression_with_a_setuptools_that_reads_it() -> None:
    # setuptools >= 77 warns "`project.license` as a TOML table is deprecated" on {text = ...} and
    # "License classifiers are deprecated" on License :: classifiers; older setuptools cannot read the
    # SPDX string, so the build requirement says which.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert not [c for c in project["project"].get("classifiers", []) if c.startswith("License ::")]
    assert "setuptools>=77" in project["build-system"]["requires"]
