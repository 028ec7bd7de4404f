"""The README's "Bring your own data" runs verbatim on a public data set shipped inside a PyPI package.

The python block after `<!-- byod-data -->` loads scikit-learn's bundled wine CSV (no download) into a DuckDB
file shaped like a product catalogue and its labels; the bash block after `<!-- byod -->` runs `packwise init`
on those tables, trains on the generated config with no edit, and scores the whole catalogue monthly. Then a
daily run on the same config is refused before its pipeline, naming the column it needs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def byod_blocks(readme: str) -> tuple[str, list[list[str]]]:
    """The data-loading python block and the argv of every command line of the bash block."""
    (code,) = re.findall(r"<!-- byod-data -->\n```python\n(.*?)\n```", readme, re.S)
    (block,) = re.findall(r"<!-- byod -->\n```bash\n(.*?)\n```", readme, re.S)
    return code, [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def test_the_byod_section_is_marked_and_runs_init_train_and_infer() -> None:
    code, commands = byod_blocks((ROOT / "README.md").read_text())
    assert "load_wine" in code and "duckdb" in code
    assert [argv[:2] for argv in commands] == [[".venv/bin/packwise", c] for c in ("init", "train", "infer")]


@pytest.mark.pipeline
def test_bring_your_own_data_runs_verbatim(tmp_path: Path) -> None:
    code, commands = byod_blocks((ROOT / "README.md").read_text())
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    (tmp_path / "load.py").write_text(code)
    loaded = subprocess.run([sys.executable, "load.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-3000:]

    outputs: dict[str, str] = {}
    for argv in commands:
        done = subprocess.run(
            [str(BIN / "packwise"), *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"{shlex.join(argv)!r} exited {done.returncode}:\n{out[-3000:]}"
        outputs[argv[1]] = out

    assert "178 products (wines, id sku), 534 labels (wine_labels)" in outputs["init"]
    assert "13 numeric" in outputs["init"]
    config = yaml.safe_load((tmp_path / "packwise.yaml").read_text())
    assert config["features"]["boolean"] == [] and config["features"]["derived"] == []
    assert {t["name"] for t in config["package_types"]} == {"cultivar_1", "cultivar_2", "cultivar_3"}

    decided = re.finditer(r"│ (cultivar_\d)\s+│\s+([0-9.]+)\s+│.*Approved", outputs["train"])
    rows = {m.group(1): m.group(2) for m in decided}
    assert sorted(rows) == ["cultivar_1", "cultivar_2", "cultivar_3"], outputs["train"]
    assert all(float(auc) >= 0.9 for auc in rows.values()), rows
    assert (tmp_path / ".packwise-wine").is_dir() and not (tmp_path / ".packwise").exists()
    assert "monthly run: 178 products scored, loaded" in outputs["infer"], outputs["infer"]

    daily = subprocess.run(
        [str(BIN / "packwise"), "infer", "-c", "packwise.yaml", "--mode", "daily"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert daily.returncode == 2
    assert "daily inference:" in daily.stderr and "'added_at'" in daily.stderr
    assert "--mode monthly needs none" in daily.stderr
