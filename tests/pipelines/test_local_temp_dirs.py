"""A local run leaves nothing in the temp directory: kfp's `mktemp -d` per task went into /tmp for good.

After one afternoon of runs, 1,365 `/tmp/tmp.*` directories were left, one per task.
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.

import json
import os
import tempfile
from pathlib import Path

import pytest
from kfp import dsl

from packwise_pipelines import local as local_runner
from tests.conftest import make_config


def test_a_local_run_removes_every_temp_dir_its_tasks_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An isolated temp directory, so other processes on the machine cannot disturb the count.
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    cfg = make_config(tmp_path / "state")
    seen = tmp_path / "seen.json"

    @dsl.component(base_image="unused-by-the-subprocess-runner", install_kfp_package=False)
    def leave_temp_files(path: str) -> None:
        import json
        import os
        import tempfile

        made = tempfile.mkdtemp()  # a task that forgets to clean up after itself
        with open(path, "w") as out:
            json.dump({"tmpdir": os.environ.get("TMPDIR"), "made": made}, out)

    @dsl.pipeline(name="temp-dirs")
    def temp_dirs(path: str, other: str, run_id: str = "") -> None:
        leave_temp_files(path=path).set_caching_options(False)
        leave_temp_files(path=other).set_caching_options(False)

    arguments = {"path": str(seen), "other": str(tmp_path / "other.json")}
    run = local_runner.run_pipeline_locally(temp_dirs, arguments, cfg, "temp-dirs-run")
    assert run.succeeded, run.log_path.read_text()[-2000:]
    task_view = json.loads(seen.read_text())
    # the tasks worked in a per-run directory under the temp dir, and it is gone with what they left
    assert Path(task_view["tmpdir"]).parent == system_tmp
    assert Path(task_view["tmpdir"]).name.startswith("packwise-temp-dirs-run-")
    assert Path(task_view["made"]).is_relative_to(task_view["tmpdir"])
    assert not Path(task_view["made"]).exists()
    assert list(system_tmp.iterdir()) == []
    assert os.environ["TMPDIR"] == str(system_tmp)  # the caller's environment is restored
