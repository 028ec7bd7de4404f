"""`packwise submit`, `packwise schedule apply|list`, `packwise retry`, `packwise watch`: the cluster commands.

`register(app)` adds them to the main `packwise` app; `cluster_app` is the same commands as their own app.
The KFP endpoint is `cluster.host` (`--set cluster.host=http://localhost:8888` after a port-forward).
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError, PackwiseError
from packwise_app.command_line import ConfigOpt, SetOpt, fail, load

console = Console(markup=False)  # run ids, trigger keys and reasons are data, printed as text

cluster_app = typer.Typer(help="Run Packwise on a Kubeflow Pipelines cluster.", no_args_is_help=True)
schedule_app = typer.Typer(
    help="Weekly training, daily and monthly inference as KFP recurring runs.", no_args_is_help=True
)


def _load(config: Path | None, overrides: list[str] | None) -> PackwiseConfig:
    return load(config, overrides, resolve=False)  # paths name locations inside the cluster's pods


def _parse_params(pairs: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected name=value, e.g. --param week=3")
        name, raw = item.split("=", 1)
        params[name.strip()] = yaml.safe_load(raw)
    return params


def _parse_models(pairs: list[str] | None) -> dict[str, int]:
    pinned: dict[str, int] = {}
    for item in pairs or []:
        name, _, version = item.partition("=")
        if not name or not version.isdigit():
            raise ConfigError(f"--model {item!r}: expected TYPE=VERSION, e.g. --model bag=3")
        pinned[name] = int(version)
    return pinned


def kfp_command_line(
    cfg: PackwiseConfig, pipeline: str, params: dict[str, Any], run_name: str | None, package_dir: str = "build"
) -> str:
    """The `kfp run create` command line that starts the same run from `packwise compile`'s YAML.

    The installed kfp CLI (2.x) has `kfp run create`, not `kfp run submit`; run parameters are KEY=VALUE
    arguments (JSON for mappings and lists).
    """
    argv = ["kfp"]
    if cfg.cluster.host:
        argv += ["--endpoint", cfg.cluster.host]
    argv += ["run", "create", "-e", cfg.cluster.experiment, "-f", f"{package_dir}/{pipeline}.yaml"]
    if run_name:
        argv += ["-r", run_name]
    for name, value in params.items():
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
        argv.append(f"{name}={text}")
    return shlex.join(argv)


def submit(
    pipeline: str = typer.Argument(..., help="training or inference"),
    week: int | None = typer.Option(None, "--week", "-w", help="training: label snapshot week."),
    mode: str | None = typer.Option(None, "--mode", help="inference: daily or monthly."),
    model: list[str] | None = typer.Option(None, "--model", help="inference: pin TYPE=VERSION (repeatable)."),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="Any run parameter name=value (repeatable)."),
    run_name: str | None = typer.Option(None, "--run-name", help="Run name shown in the KFP UI."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Compile PIPELINE for the cluster and start one run; parameters come from the configuration."""
    try:
        cfg = _load(config, overrides)
        params = _parse_params(param)
        if week is not None:
            params["week"] = week
        if mode is not None:
            params["mode"] = mode
        if model:
            params["pinned_models"] = _parse_models(model)
        from packwise_app.cluster import connect, validate_params

        validate_params(pipeline, params, "submit")  # before connecting: a typo fails fast
        console.print(
            f"equivalent (after `packwise compile --out build` with the same config): "
            f"{kfp_command_line(cfg, pipeline, params, run_name)}",
            highlight=False,
            soft_wrap=True,
        )
        run = connect(cfg).submit(pipeline, params, run_name=run_name)
    except PackwiseError as err:
        fail(err)
    console.print(f"started {run.pipeline} run {run.run_id} ({run.run_name})", highlight=False)


def retry(
    run_id: str = typer.Argument(..., help="Id of a failed run (KFP UI or `kfp run list`)."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Resume a failed cluster run from its failed tasks (KFP RetryRun); finished tasks are kept."""
    try:
        from packwise_app.cluster import connect

        state = connect(_load(config, overrides)).retry(run_id)
    except PackwiseError as err:
        fail(err)
    console.print(f"retrying run {run_id} (was {state})", highlight=False)


def watch(
    once: bool = typer.Option(False, "--once", help="Handle the files present now and exit."),
    heartbeat: Path | None = typer.Option(None, "--heartbeat", help="File touched after every poll (liveness)."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Start one run per trigger file dropped under cluster.trigger.prefix (the in-cluster watcher)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = _load(config, overrides)
        from packwise_app.trigger import watcher_for

        watcher = watcher_for(cfg)
        if not watcher.conditional_writes_honoured():
            logging.getLogger("packwise_app.trigger").warning(
                "s3://%s ignores conditional writes: run a single watcher replica", watcher.bucket
            )
        if once:
            for result in watcher.poll_once():
                console.print(f"{result.key}: {result.outcome} {result.run_id or result.reason or ''}", highlight=False)
            return
        console.print(f"watching s3://{watcher.bucket}/{watcher.prefix} every {cfg.cluster.trigger.poll_interval_s}s")
        watcher.run_forever(cfg.cluster.trigger.poll_interval_s, heartbeat)
    except PackwiseError as err:
        fail(err)


@schedule_app.command("apply")
def schedule_apply(config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt) -> None:
    """Make the recurring runs match cluster.schedules (applying twice creates nothing new)."""
    try:
        from packwise_app.cluster import connect

        changes = connect(_load(config, overrides)).apply_schedules()
    except PackwiseError as err:
        fail(err)
    for change in changes:
        console.print(f"{change.name}: {change.action} {change.recurring_run_id or ''}", highlight=False)


@schedule_app.command("list")
def schedule_list(config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt) -> None:
    """List the recurring runs of the Packwise experiment."""
    try:
        from packwise_app.cluster import SCHEDULE_MARK, connect

        runs = connect(_load(config, overrides)).list_schedules()
    except PackwiseError as err:
        fail(err)
    table = Table(title="recurring runs")
    for col in ("name", "cron", "mode", "managed", "id"):
        table.add_column(col)
    for run in runs:
        cron = getattr(getattr(getattr(run, "trigger", None), "cron_schedule", None), "cron", None) or "-"
        managed = "yes" if (run.description or "").startswith(SCHEDULE_MARK) else "no"
        table.add_row(run.display_name, cron, str(getattr(run, "mode", "-")), managed, str(run.recurring_run_id))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Adds the cluster commands to `app` (the main `packwise` CLI)."""
    app.command("submit")(submit)
    app.command("retry")(retry)
    app.command("watch")(watch)
    app.add_typer(schedule_app, name="schedule")


register(cluster_app)
