"""`packwise train` and `packwise infer`: the local pipeline runs, their checks before the run and the tables
they print (also used by `packwise runs`). Registered on the main app by `cli`; kfp is imported lazily
(through `packwise_pipelines`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError, PackwiseError
from packwise.files import check_writable_dir
from packwise.lineage import check_run_id
from packwise_app.command_line import (
    ConfigOpt,
    Mode,
    Runner,
    RunnerOpt,
    SetOpt,
    check_package_type,
    err_console,
    fail,
    load,
    user_errors,
)

if TYPE_CHECKING:
    from packwise_app.progress_view import TaskProgressView
    from packwise_pipelines.local import LocalRun

console = Console()


def _check_notify(cfg: PackwiseConfig) -> None:
    """A webhook whose URL is missing or not http(s) fails here, before the run, not in its last task."""
    if "webhook" in cfg.notify.active:
        from packwise.notify.webhook import webhook_url

        webhook_url(cfg.notify)


QuietOpt = typer.Option(
    False, "--quiet", "-q", help="No progress, tables or summary line (for scripts); errors still go to stderr."
)


def _task_view(quiet: bool, verbose: bool) -> contextlib.AbstractContextManager[TaskProgressView]:
    """Live task bars on a terminal, plain lines otherwise (`packwise_app.progress_view`); bound to the
    terminal the command started with (kfp.local's stdout is captured while it runs). --verbose echoes
    kfp's raw logs, which live bars would fight with: plain lines then."""
    from packwise_app.progress_view import TaskProgressView

    out = Console(file=sys.stdout)
    if verbose and out.is_terminal:
        out = Console(file=sys.stdout, force_terminal=False, force_interactive=False)
    return TaskProgressView(out, quiet=quiet).showing()


def _finish(
    cfg: PackwiseConfig,
    run: LocalRun,
    quiet: bool,
    print_table: Callable[[dict[str, Any]], None],
    retry_hint: str | None = None,
) -> None:
    """After a local run: its summary table and timing line (unless --quiet); on failure the failed tasks,
    `retry_hint` and exit 1."""
    from packwise.run_summary import read_summary

    with user_errors():
        summary = read_summary(cfg.storage.root, run.run_id)
    if summary is not None and not quiet:
        print_table(summary)
    if not quiet:
        console.print(f"run {run.run_id} took {run.seconds:.1f}s; log: {run.log_path}", highlight=False)
    if not run.succeeded:
        _report_failure(run)
        if retry_hint:
            err_console.print(retry_hint, highlight=False)
        raise typer.Exit(1)


def _report_failure(run: LocalRun) -> None:
    for event in run.events:
        if event.state == "failed" and event.error:
            line = Text.assemble(("error:", "red"), f" {event.label}: {event.error}")  # data is text, not markup
            err_console.print(line, highlight=False, soft_wrap=True)
    err_console.print(
        f"failed tasks: {', '.join(run.failed_tasks) or 'unknown'}; full log: {run.log_path}. "
        "Fix the cause and run the same command again: finished tasks are reused from the cache.",
        highlight=False,
        soft_wrap=True,
    )


def train(
    week: int = typer.Option(..., "--week", "-w", help="Label snapshot week to train on; 0: the newest labelled week."),
    allow_no_new_labels: bool = typer.Option(
        False, "--allow-no-new-labels", help="Train on a week that brings no labels of its own."
    ),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
    runner: Runner = RunnerOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show KFP's raw task logs."),
    run_id: str | None = typer.Option(None, metavar="RUN_ID", help="Run id (default: generated)."),
    quiet: bool = QuietOpt,
) -> None:
    """Run the weekly training pipeline locally (kfp.local, caching on) and print the decisions."""
    try:
        cfg = load(config, overrides)
        if week < 0:
            raise ConfigError(f"--week {week}: weeks start at 1 (0: the newest labelled week)")
        if run_id is not None:
            check_run_id(run_id, "--run-id")
        _check_notify(cfg)
        check_writable_dir(cfg.storage.root, "storage.root")
        from packwise.snapshot import resolve_training_week
        from packwise.warehouse import open_warehouse

        with open_warehouse(cfg.warehouse, read_only=True) as wh:
            week = resolve_training_week(wh, week, allow_no_new_labels, cfg.warehouse.label_weeks_query)
        from packwise_pipelines.local import training_run

        if not quiet:
            console.print(
                f"[bold]training week {week}[/bold] ({runner.value} runner, storage {escape(str(cfg.storage.root))})"
            )
        with _task_view(quiet, verbose) as view:
            run = training_run(cfg, week, runner=runner.value, verbose=verbose, run_id=run_id, on_event=view)
    except PackwiseError as err:
        fail(err)
    _finish(cfg, run, quiet, print_training_table)


PENDING = "PendingManualApproval"


def print_training_table(summary: dict[str, Any]) -> None:
    table = Table(title=f"week {summary.get('week')} decisions (data {str(summary.get('fingerprint'))[:12]})")
    table.add_column("package type", no_wrap=True)
    for col in ("cand AUC", "champ AUC", "cand PR-AUC", "champ PR-AUC"):
        table.add_column(col, justify="right", min_width=6)
    table.add_column("decision", no_wrap=True)
    # PendingManualApproval is the widest cell; below ~88 columns it would squeeze the metrics to `0.9…`
    short = console.width < 88
    table.add_column("version", no_wrap=True)
    colors = {"Approved": "green", "Rejected": "red", "PendingManualApproval": "yellow", "failed": "red"}
    for row in summary["package_types"]:
        cand = row.get("candidate") or {}
        champ = row.get("champion_scores") or {}
        decision = row["decision"]
        table.add_row(
            Text(str(row["package_type"])),
            _fmt(cand.get("auc")),
            _fmt(champ.get("auc")),
            _fmt(cand.get("pr_auc")),
            _fmt(champ.get("pr_auc")),
            f"[{colors.get(decision, 'white')}]{'Pending' if short and decision == PENDING else decision}[/]",
            "-" if row.get("version") is None else f"v{row['version']}",
        )
    console.print(table)
    if short and any(row["decision"] == PENDING for row in summary["package_types"]):
        note = "  Pending: PendingManualApproval (`packwise registry approve|reject TYPE VERSION`)"
        console.print(note, soft_wrap=True)
    for row in summary["package_types"]:
        if row.get("reason"):
            console.print(Text(f"  {row['package_type']}: {row['reason']}"), highlight=False, soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def infer(
    mode: Mode = typer.Option(..., "--mode", "-m", help="daily (products added since the last run) or monthly (all)."),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        metavar="TYPE=VERSION",
        help="Pin a model version instead of the champion, e.g. --model mailer=3 (repeatable).",
    ),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
    runner: Runner = RunnerOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show KFP's raw task logs."),
    run_id: str | None = typer.Option(
        None,
        metavar="RUN_ID",
        help="Run id (default: generated). A run id loads its predictions once; reuse it to finish a failed run.",
    ),
    quiet: bool = QuietOpt,
) -> None:
    """Run the inference pipeline locally (kfp.local, caching on) and print what it recommended."""
    try:
        cfg = load(config, overrides)
        from packwise.inference import check_mode, parse_pins

        check_mode(mode.value)
        if run_id is not None:
            check_run_id(run_id, "--run-id")
        _check_notify(cfg)
        check_writable_dir(cfg.storage.root, "storage.root")
        pins = parse_pins(model or [])
        for package_type, version in pins.items():
            check_package_type(cfg, package_type, f"--model {package_type}={version}")
        if mode is Mode.daily:
            _check_daily(cfg)
        _check_models(cfg, pins)
        from packwise_pipelines.local import inference_run

        if not quiet:
            console.print(
                f"[bold]inference {mode.value}[/bold] ({runner.value} runner, storage {escape(str(cfg.storage.root))})"
            )
        with _task_view(quiet, verbose) as view:
            run = inference_run(
                cfg, mode.value, pins, runner=runner.value, verbose=verbose, run_id=run_id, on_event=view
            )
    except PackwiseError as err:
        fail(err)
    hint = f"to finish this very run (it loads at most once), pass --run-id {run.run_id}"
    _finish(cfg, run, quiet, print_inference_table, hint)


def _check_models(cfg: PackwiseConfig, pins: dict[str, int]) -> None:
    """Fails before the pipeline starts when a type has no champion or a pin is missing or Rejected."""
    from packwise.errors import ModelNotFoundError
    from packwise.inference import check_models
    from packwise.registry import open_registry

    uri = cfg.registry.tracking_uri or ""
    if cfg.registry.backend == "mlflow" and uri.startswith("sqlite:///") and not Path(uri[10:]).exists():
        raise ModelNotFoundError(
            f"no model registered yet (no registry at {uri[10:]}); train first: `packwise train --week 1`"
        )
    check_models(open_registry(cfg.registry), cfg.package_type_names, pins)


def _check_daily(cfg: PackwiseConfig) -> None:
    """A daily run needs the watermark column (`added_at`); say so before the pipeline starts."""
    from packwise.inference import check_daily_query
    from packwise.warehouse import open_warehouse

    if cfg.warehouse.backend == "duckdb" and not cfg.warehouse.path.exists():
        return  # no warehouse yet: the model check that follows says what to do first
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        check_daily_query(wh, cfg.inference)


def print_inference_table(summary: dict[str, Any]) -> None:
    n = summary.get("n_products")
    state = "loaded" if summary.get("loaded") else "not loaded"
    if summary.get("already_loaded"):
        state = "already loaded before"
    title = f"{summary.get('mode')} run: {'-' if n is None else f'{n:,}'} products scored, {state}"
    table = Table(title=title)
    for col in ("package type", "recommended", "share", "change vs previous run", "model"):
        table.add_column(col)
    models = summary.get("models") or {}
    pinned = set(summary.get("models_pinned") or [])
    for row in summary.get("package_types") or []:
        change = "-" if row.get("change") is None else f"{row['change'] * 100:+.1f} pp"
        version = models.get(row["package_type"])
        label = "-" if version is None else f"v{version}" + (" (pinned)" if row["package_type"] in pinned else "")
        table.add_row(Text(str(row["package_type"])), f"{row['count']:,}", f"{row['share'] * 100:.1f}%", change, label)
    if not summary.get("package_types") and models:
        for package_type, version in models.items():
            table.add_row(Text(str(package_type)), "-", "-", "-", "-" if version is None else f"v{version}")
    console.print(table)
    if summary.get("previous_run_id"):
        console.print(f"  change is against {summary['previous_run_id']}", highlight=False)
    unseen = {k: v for k, v in (summary.get("unseen") or {}).items() if v}
    if unseen:
        console.print(
            "  unseen category values (scored as all-zero one-hot): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(unseen.items())),
            highlight=False,
        )
    if summary.get("watermark_after"):
        console.print(
            f"  {summary.get('mode')} watermark: {summary.get('watermark_before') or 'none'} -> "
            f"{summary['watermark_after']}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Adds `packwise train` and `packwise infer` to the main app."""
    app.command("train")(train)
    app.command("infer")(infer)
