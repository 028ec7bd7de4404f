"""The rehearsal's task sandbox holds: a kfp.local task writing to a shared local path fails its run.

The sandbox (tests/task_sandbox/sitecustomize.py) is what lets the production rehearsal claim that no task
shares a local path with another; these tests show it refuses such a write, records it, and lets a task
write in its own empty working directory and its outputs.
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.

import os
import re
import tempfile
from pathlib import Path

import pytest
from kfp import dsl

from packwise_pipelines import local as local_runner
from tests.conftest import make_config
from tests.task_sandbox import enable_task_sandbox

pytestmark = pytest.mark.pipeline


@dsl.component(base_image="unused-by-the-subprocess-runner", install_kfp_package=False)
def write_shared(shared_dir: str) -> None:
    import os

    os.makedirs(shared_dir, exist_ok=True)  # made by the test already: no write, only a look
    with open(os.path.join(shared_dir, "handoff.txt"), "w") as out:  # what one task leaves for another
        out.write("for the next task")


@dsl.component(base_image="unused-by-the-subprocess-runner", install_kfp_package=False)
def write_private(result: dsl.Output[dsl.Artifact]) -> str:
    import os
    import tempfile

    with open("scratch.txt", "w") as out:  # the working directory is the task's own
        out.write("mine")
    with tempfile.NamedTemporaryFile("w", delete=False) as tmp:  # and so is the temp dir
        tmp.write("mine too")
    with open(result.path, "w") as out:  # its own output, the KFP artifact channel
        out.write("ok")
    return os.getcwd()


def test_a_task_writing_to_a_shared_local_path_fails_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(tmp_path / "state")
    shared = tmp_path / "shared"
    shared.mkdir()
    sandbox = enable_task_sandbox(monkeypatch, tmp_path / "violations.log", allow=[cfg.storage.pipeline_root])

    @dsl.pipeline(name="sandbox-shared-write")
    def shared_write(shared_dir: str, run_id: str = "") -> None:
        write_shared(shared_dir=shared_dir).set_caching_options(False)

    run = local_runner.run_pipeline_locally(shared_write, {"shared_dir": str(shared)}, cfg, "sandbox-shared")
    assert not run.succeeded
    assert run.failed_tasks == ["write-shared"], run.failed_tasks
    log = run.log_path.read_text()
    assert f"task sandbox: write to the shared local path {shared / 'handoff.txt'} refused" in log
    assert sandbox.violations() == [str(shared / "handoff.txt")]
    assert list(shared.iterdir()) == []


def test_a_task_writes_freely_in_its_own_directory_and_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path / "state")
    sandbox = enable_task_sandbox(monkeypatch, tmp_path / "violations.log", allow=[cfg.storage.pipeline_root])

    @dsl.pipeline(name="sandbox-private-write")
    def private_write(run_id: str = "") -> str:
        first = write_private().set_caching_options(False)
        second = write_private().set_caching_options(False)
        second.after(first)
        return second.outputs["Output"]

    run = local_runner.run_pipeline_locally(private_write, {}, cfg, "sandbox-private")
    assert run.succeeded, run.log_path.read_text()[-3000:]
    assert sandbox.violations() == []
    log = run.log_path.read_text()
    # each task returned its working directory: two different private ones, removed with the run
    seen = set(re.findall(r"/task-[A-Za-z0-9_]+", log))
    assert len(seen) == 2, seen
    assert not list(Path(tempfile.gettempdir()).glob("packwise-sandbox-private-*"))
    assert os.environ.get("PACKWISE_SANDBOX_VIOLATIONS") == str(tmp_path / "violations.log")
