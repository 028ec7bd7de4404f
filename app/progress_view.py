"""What a person sees while `packwise train`, `infer` and `seed` run.

On a terminal: live rich progress bars, one per running task (rows scored of the shard's rows, boosting
rounds, shards cut, the load's phase), an overall bar of the shards scored, and a line above them for
every task that finished, was cached or failed. When the output is not a terminal (a pipe, a log file, CI):
plain lines, the finished/cached/failed ones as on a terminal, plus a progress line per task at most every
`PLAIN_INTERVAL` seconds, its last one (done == total), and every phase change. `quiet` shows nothing.

The events come from the tasks' `packwise.progress` markers, parsed by `packwise_pipelines.local`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

if TYPE_CHECKING:
    from packwise_pipelines.local import TaskEvent

# Seconds between two plain progress lines of one task (its last line always goes out).
PLAIN_INTERVAL = 5.0
_STATE_STYLE = {"running": "cyan", "succeeded": "green", "cached": "blue", "failed": "red"}
SCORE_TASK = "score-shard"
SHARDS_TOTAL_TASK = "shard-products"


def _bars(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,  # the bars go when the run ends; the finished-task lines stay
        redirect_stdout=False,  # kfp.local's own redirect of stdout is active while the bars run
        redirect_stderr=False,
    )


def _count(done: int | None, total: int | None, unit: str | None) -> str:
    if done is None:
        return ""
    if total:
        return f"{done:,}/{total:,} {unit} ({done / total:.0%})"
    return f"{done:,} {unit}"


def state_line(event: TaskEvent) -> str | None:
    """The line (rich markup) of a finished, cached or failed task; None for the other events."""
    if event.state not in _STATE_STYLE or event.state == "running":
        return None
    took = f" ({event.seconds:.1f}s)" if event.state in {"succeeded", "failed"} else ""
    style = _STATE_STYLE[event.state]
    return f"  [{style}]{event.state:<9}[/{style}] {event.label}{took}"


class TaskProgressView:
    """Receives task events (from any thread) and shows them; use as ``with view.showing(): run(on_event=view)``.

    Args:
        console: Where to show them; its ``is_terminal`` chooses bars or plain lines. Bind it to the real
            stdout before the run starts (kfp.local redirects ``sys.stdout`` while it runs).
        quiet: Show nothing.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(file=sys.stdout)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self._lock = threading.Lock()
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._last_plain: dict[str, float] = {}
        self._phase: dict[str, str] = {}
        self._shards_total: int | None = None
        self._shards_done = 0
        self._shards_bar: TaskID | None = None

    @contextmanager
    def showing(self) -> Iterator[TaskProgressView]:
        """Shows the live bars (on a terminal) for the duration; removes them at the end."""
        if not self.live:
            yield self
            return
        self._bars = _bars(self.console)
        with self._bars:
            try:
                yield self
            finally:
                with self._lock:
                    self._bars.stop()
                    self._bars = None

    def __call__(self, event: TaskEvent) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._bars is not None:
                self._live_event(event)
            else:
                self._plain_event(event)

    # -- plain lines -------------------------------------------------------------------------------

    def _print(self, markup: str | Text) -> None:
        self.console.print(markup, highlight=False, soft_wrap=True)

    def _plain_event(self, event: TaskEvent) -> None:
        label = event.label
        if event.state == "running":
            self._last_plain[label] = time.monotonic()
            return
        if event.state == "progress":
            if event.phase is not None:
                if self._phase.get(label) != event.phase:
                    self._phase[label] = event.phase
                    self._print(Text(f"  progress  {label}: {event.phase}"))
                return
            final = event.total is not None and event.done is not None and event.done >= event.total
            now = time.monotonic()
            if final or now - self._last_plain.get(label, 0.0) >= PLAIN_INTERVAL:
                self._last_plain[label] = now
                self._print(Text(f"  progress  {label} {_count(event.done, event.total, event.unit)}"))
            return
        self._phase.pop(label, None)
        line = state_line(event)
        if line is not None:
            self._print(line)

    # -- live bars ---------------------------------------------------------------------------------

    def _live_event(self, event: TaskEvent) -> None:
        bars = self._bars
        assert bars is not None
        label = event.label
        if event.state == "running":
            if label not in self._tasks:
                self._tasks[label] = bars.add_task(Text(label).markup, total=None, count="")
            if event.task == SCORE_TASK:
                self._ensure_shards_bar()
            return
        if event.state == "progress":
            task = self._tasks.get(label)
            if task is None:
                task = self._tasks[label] = bars.add_task(Text(label).markup, total=None, count="")
            if event.phase is not None:
                bars.update(task, description=f"{Text(label).markup}: {event.phase}")
            else:
                bars.update(
                    task,
                    total=event.total,
                    completed=event.done or 0,
                    count=_count(event.done, event.total, event.unit),
                )
            if event.task == SHARDS_TOTAL_TASK and event.unit == "shards" and event.done == event.total:
                self._shards_total = event.total
                if self._shards_bar is not None:
                    bars.update(self._shards_bar, total=self._shards_total, count=self._shards_count())
            return
        task = self._tasks.pop(label, None)
        if task is not None:
            bars.remove_task(task)
        if event.task == SCORE_TASK and event.state in {"succeeded", "cached"}:
            self._shards_done += 1
            self._ensure_shards_bar()
            assert self._shards_bar is not None
            bars.update(self._shards_bar, completed=self._shards_done, count=self._shards_count())
        line = state_line(event)
        if line is not None:
            bars.console.print(line, highlight=False, soft_wrap=True)

    def _shards_count(self) -> str:
        return _count(self._shards_done, self._shards_total, "shards")

    def _ensure_shards_bar(self) -> None:
        assert self._bars is not None
        if self._shards_bar is None:
            self._shards_bar = self._bars.add_task(
                "[bold]scoring[/bold]",
                total=self._shards_total,
                completed=self._shards_done,
                count=self._shards_count(),
            )


class SeedProgressView:
    """What `packwise seed` shows while it generates and writes: a bar on a terminal, plain lines otherwise.

    Called as ``view(step, done, total)`` (see `packwise.synthetic.seed_warehouse`).
    """

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(file=sys.stdout)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self._bars: Progress | None = None
        self._task: TaskID | None = None
        self._step: str | None = None
        self._last_plain = 0.0

    @contextmanager
    def showing(self) -> Iterator[SeedProgressView]:
        if not self.live:
            yield self
            return
        self._bars = _bars(self.console)
        with self._bars:
            try:
                yield self
            finally:
                self._bars = None

    def __call__(self, step: str, done: int, total: int | None) -> None:
        if self.quiet:
            return
        unit = "products" if step.endswith("products") else "rows"
        count = _count(done, total, unit) if total else ""
        if self._bars is not None:
            if step != self._step:
                if self._task is not None:
                    self._bars.remove_task(self._task)
                self._task = self._bars.add_task(step, total=total, completed=done, count=count)
                self._step = step
            else:
                assert self._task is not None
                self._bars.update(self._task, total=total, completed=done, count=count)
            return
        final = total is not None and done >= total
        now = time.monotonic()
        if step != self._step or final or now - self._last_plain >= PLAIN_INTERVAL:
            self.console.print(Text(f"  {step} {count}".rstrip()), highlight=False, soft_wrap=True)
            self._step = step
            self._last_plain = now
