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


def test_a_cache_hit_names_the_package_type_or_shard_its_outputs_carry(tmp_path: Path) -> None:
    import json

    cache = tmp_path / "kfp-cache"
    cache.mkdir()
    model = {"__kfp_artifact__": True, "uri": "/x", "metadata": {"package_type": "mailer", "labels": 10}}
    (cache / ("a1b2c3d4e5f6" + "0" * 52 + ".json")).write_text(json.dumps({"model": model, "Output": "{}"}))
    summary = json.dumps({"package_type": "bag", "decision": "Approved"})
    (cache / ("0123456789ab" + "f" * 52 + ".json")).write_text(json.dumps({"Output": summary}))
    (cache / ("feedfeedfeed" + "1" * 52 + ".json")).write_text(json.dumps({"Output": json.dumps({"shard": "s-003"})}))
    (cache / ("abcabcabcabc" + "2" * 52 + ".json")).write_text(json.dumps({"Output": "not json", "n": 3}))
    progress = ProgressLog(log_path=tmp_path / "run.log", on_event=lambda e: None, cache_root=cache)
    for task, key in [("train", "a1b2c3d4e5f6"), ("register-2", "0123456789ab"), ("score-shard", "feedfeedfeed"),
                      ("split", "abcabcabcabc"), ("validate", "999999999999")]:  # fmt: skip
        progress.feed_line(f"INFO: Task {task} cache hit (key={key}); skipping execution.")
    progress.close()
    assert [e.label for e in progress.events] == [
        "train (mailer)", "register (bag)", "score-shard (s-003)", "split", "validate"
    ]  # fmt: skip
    assert {e.state for e in progress.events} == {"cached"}
