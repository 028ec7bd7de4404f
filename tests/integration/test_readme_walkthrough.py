"""The README's walkthrough runs verbatim in a fresh directory and does what its comments claim.

The bash blocks after a `<!-- walkthrough -->` marker in README.md are run line by line, with `.venv/bin/`
replaced by this environment's scripts directory and the working directory a fresh temporary one (so
`storage.root`, the warehouse and the registry live there). Each line's exit code and output are checked
against what the story says: mailer week 2 waits for a person, the approval goes through, the daily run
after `seed --add-products 500` scores exactly those 500 products.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def walkthrough_commands(readme: str) -> list[list[str]]:
    """The argv of every command line in the bash blocks preceded by `<!-- walkthrough -->` (comments dropped)."""
    blocks = re.findall(r"<!-- walkthrough -->\n```bash\n(.*?)\n```", readme, re.S)
    return [argv for block in blocks for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def test_the_walkthrough_is_marked_and_uses_only_packwise() -> None:
    commands = walkthrough_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 10
    assert all(argv[0] == ".venv/bin/packwise" for argv in commands)


@pytest.mark.pipeline
def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    commands = walkthrough_commands((ROOT / "README.md").read_text())
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    outputs: list[tuple[list[str], str]] = []
    for argv in commands:
        done = subprocess.run(
            [str(BIN / "packwise"), *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"{shlex.join(argv)!r} exited {done.returncode}:\n{out[-3000:]}"
        outputs.append((argv[1:], out))

    def output_of(*args: str, nth: int = 0) -> str:
        found = [out for argv, out in outputs if argv[: len(args)] == list(args)]
        assert len(found) > nth, f"the walkthrough has no `packwise {' '.join(args)}` (#{nth + 1})"
        return found[nth]

    assert (tmp_path / ".packwise" / "warehouse.duckdb").exists()  # storage went to the fresh directory
    first_week2 = output_of("train", "--week", "2")
    mailer = next(line for line in first_week2.splitlines() if "│ mailer" in line)
    assert "PendingManualApproval" in mailer and "v2" in mailer
    for other in ("own_container", "bag", "box"):
        assert "Approved" in next(line for line in first_week2.splitlines() if f"│ {other}" in line)
    second_week2 = output_of("train", "--week", "2", nth=1)
    assert re.search(r"cached\s+train", second_week2) and not re.search(r"succeeded\s+train", second_week2)
    assert "PendingManualApproval" in output_of("registry", "show", "mailer", "2")
    monthly = output_of("infer", "--mode", "monthly")
    assert re.search(r"monthly run: 4,000 products scored, loaded", monthly)
    assert "added 500 products" in output_of("seed", "--add-products", "500")
    daily = output_of("infer", "--mode", "daily")
    assert re.search(r"daily run: 500 products scored, loaded", daily)
