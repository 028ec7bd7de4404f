"""The local runner leaves the process as it found it, whatever kfp.local did to it meanwhile."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path

from packwise_pipelines.local import ProgressLog, captured


def test_print_and_root_handlers_are_restored_even_if_kfp_leaks_them(tmp_path: Path) -> None:
    original_print = builtins.print
    handlers = logging.getLogger().handlers[:]
    progress = ProgressLog(log_path=tmp_path / "run.log", on_event=lambda e: None)
    with captured(progress):
        # what kfp.local's unlocked indented_print()/local_logger_context() can leave behind
        builtins.print = lambda *a, **k: original_print("    ", *a, **k)
        logging.getLogger().addHandler(logging.StreamHandler())
        print("::packwise-task::" + '{"task": "train", "package_type": "bag", "state": "succeeded", "seconds": 1.5}')
    progress.close()
    assert builtins.print is original_print
    assert logging.getLogger().handlers == handlers
    assert [(e.label, e.state) for e in progress.events] == [("train (bag)", "succeeded")]
    assert all(line == line.rstrip() for line in (tmp_path / "run.log").read_text().splitlines())
