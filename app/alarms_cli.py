"""`packwise alarms apply`: creates or updates the CloudWatch alarms, idempotently."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from packwise.errors import PackwiseError
from packwise_app.command_line import ConfigOpt, SetOpt, fail, load

alarms_app = typer.Typer(help="CloudWatch alarms on the metrics of the cloudwatch notifier.", no_args_is_help=True)


@alarms_app.command("apply")
def apply(config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt) -> None:
    """Creates the alarms for a rejection, a failed run and a missed schedule; reports what changed."""
    from packwise.alarms import apply_alarms

    try:
        changes = apply_alarms(load(config, overrides, resolve=False).notify)
    except PackwiseError as err:
        fail(err)
    table = Table("alarm", "action", "fires when")
    for change in changes:
        table.add_row(change.name, change.action, change.description)
    Console(markup=False).print(table)
