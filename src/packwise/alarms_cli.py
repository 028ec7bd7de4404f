"""`packwise alarms apply`: creates or updates the CloudWatch alarms, idempotently."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from packwise.config import load_config
from packwise.errors import ConfigError, PackwiseError

alarms_app = typer.Typer(help="CloudWatch alarms on the metrics of the cloudwatch notifier.", no_args_is_help=True)


@alarms_app.command("apply")
def apply(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file; embedded defaults if omitted."),
    overrides: list[str] | None = typer.Option(None, "--set", help="Override a key, e.g. --set notify.aws_region=X."),
) -> None:
    """Creates the alarms for a rejection, a failed run and a missed schedule; reports what changed."""
    from packwise.alarms import apply_alarms

    try:
        cfg = load_config(config, overrides or [])
        changes = apply_alarms(cfg.notify)
    except (ConfigError, PackwiseError) as err:
        Console(stderr=True).print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table("alarm", "action", "fires when")
    for change in changes:
        table.add_row(change.name, change.action, change.description)
    Console().print(table)
