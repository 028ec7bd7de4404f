"""Progress a person can see: the tasks' progress markers, and how the CLI shows them (bars on a terminal,
plain lines on a pipe, nothing with --quiet)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from packwise import progress
from packwise_app.progress_view import SeedProgressView, TaskProgressView
from packwise_pipelines.local import ProgressLog, TaskEvent


def _markers(out: str) -> list[dict[str, Any]]:
    return [e for line in out.splitlines() if (e := progress.parse(line)) is not None]


def test_advance_and_phase_report_the_running_task_and_nothing_outside_one(capsys: pytest.CaptureFixture[str]) -> None:
    progress.advance(5, 10, "rows")
    progress.phase("inserting")
    assert _markers(capsys.readouterr().out) == []
    with progress.task_report("score-shard", "shard-00003"):
        for done in range(0, 1001, 100):  # eleven calls inside one throttle interval
            progress.advance(done, 1000, "rows")
        progress.phase("writing")
    events = _markers(capsys.readouterr().out)
    moves = [e for e in events if e["state"] == "progress" and "done" in e]
    # the first and the last (done == total) always go out; the ones between are throttled
    assert [e["done"] for e in moves] == [0, 1000]
    assert all(e["task"] == "score-shard" and e["package_type"] == "shard-00003" for e in events)
    assert {"phase": "writing"}.items() <= next(e for e in events if "phase" in e).items()
    assert events[0]["state"] == "running" and events[-1]["state"] == "succeeded"


def test_the_local_runner_parses_progress_but_keeps_it_out_of_the_run_record(tmp_path: Path) -> None:
    seen: list[TaskEvent] = []
    log = ProgressLog(log_path=tmp_path / "run.log", on_event=seen.append)
    marker = {"task": "score-shard", "package_type": "shard-00000", "state": "progress", "done": 7, "total": 9}
    log.feed_line(progress.MARKER + json.dumps({**marker, "unit": "rows"}))
    log.feed_line(progress.MARKER + json.dumps({"task": "score-shard", "package_type": "shard-00000",
                                                "state": "succeeded", "seconds": 1.0}))  # fmt: skip
    log.close()
    assert (seen[0].state, seen[0].done, seen[0].total, seen[0].unit) == ("progress", 7, 9, "rows")
    assert [e.state for e in log.events] == ["succeeded"]


def _run_events() -> list[TaskEvent]:
    shard = "shard-00000"
    return [
        TaskEvent("shard-products", "running"),
        TaskEvent("shard-products", "progress", done=2, total=2, unit="shards"),
        TaskEvent("shard-products", "succeeded", seconds=0.4),
        TaskEvent("score-shard", "running", package_type=shard),
        TaskEvent("score-shard", "progress", package_type=shard, done=65_536, total=100_000, unit="rows"),
    ]


def test_plain_lines_when_the_output_is_not_a_terminal() -> None:
    out = io.StringIO()
    view = TaskProgressView(Console(file=out, width=120))
    assert not view.live
    with view.showing():
        for event in [
            *_run_events(),
            TaskEvent("score-shard", "progress", package_type="shard-00000", done=100_000, total=100_000, unit="rows"),
            TaskEvent("score-shard", "succeeded", package_type="shard-00000", seconds=2.5),
            TaskEvent("load-predictions", "running"),
            TaskEvent("load-predictions", "progress", phase="inserting"),
            TaskEvent("load-predictions", "progress", phase="inserting"),
            TaskEvent("load-predictions", "failed", seconds=0.1, error="boom"),
        ]:
            view(event)
    lines = out.getvalue().splitlines()
    assert "  progress  shard-products 2/2 shards (100%)" in lines
    assert "  progress  score-shard (shard-00000) 100,000/100,000 rows (100%)" in lines
    assert "  succeeded score-shard (shard-00000) (2.5s)" in lines
    assert lines.count("  progress  load-predictions: inserting") == 1  # a phase is printed once
    assert "  failed    load-predictions (0.1s)" in lines
    assert "\x1b[" not in out.getvalue()  # no escape codes in a log file


def test_a_terminal_shows_live_bars_with_rows_of_rows_and_shards_done() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system="standard")
    view = TaskProgressView(console)
    assert view.live
    with view.showing():
        for event in _run_events():
            view(event)
        assert view._bars is not None
        view._bars.refresh()
        rendered = out.getvalue()
        view(TaskEvent("score-shard", "succeeded", package_type="shard-00000", seconds=2.5))
    assert "━" in rendered  # a bar
    assert "score-shard (shard-00000)" in rendered and "65,536/100,000 rows (66%)" in rendered
    assert "0/2 shards" in rendered
    assert "succeeded" in out.getvalue() and "shard-products" in out.getvalue()


def test_quiet_shows_nothing() -> None:
    out = io.StringIO()
    view = TaskProgressView(Console(file=out, force_terminal=True), quiet=True)
    with view.showing():
        for event in _run_events():
            view(event)
    assert out.getvalue() == ""


def test_seed_view_plain_lines_and_a_bar_on_a_terminal() -> None:
    out = io.StringIO()
    view = SeedProgressView(Console(file=out, width=120))
    with view.showing():
        view("generating products", 0, 2_000)
        view("generating products", 2_000, 2_000)
        view("writing products", 0, None)
    assert out.getvalue().splitlines() == [
        "  generating products 0/2,000 products (0%)",
        "  generating products 2,000/2,000 products (100%)",
        "  writing products",
    ]
    out = io.StringIO()
    view = SeedProgressView(Console(file=out, force_terminal=True, width=120))
    with view.showing():
        view("generating products", 500, 2_000)
        assert view._bars is not None
        view._bars.refresh()
    assert "━" in out.getvalue() and "500/2,000 products (25%)" in out.getvalue()
