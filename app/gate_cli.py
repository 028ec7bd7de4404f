"""`packwise gate replay`: today's gate policy and a proposed one over the stored weekly snapshots.

Mounted on the main CLI by `register(app)`; the replay itself is `packwise.replay`.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from packwise.errors import PackwiseError
from packwise_app.command_line import fail, load

if TYPE_CHECKING:
    from packwise.config import GateConfig
    from packwise.replay import ReplayResult

gate_app = typer.Typer(help="Try gate policies on past weeks without touching the registry.", no_args_is_help=True)

_STYLE = {"Approved": "green", "PendingManualApproval": "yellow", "Rejected": "red"}
_SHORT = {"Approved": "approved", "PendingManualApproval": "review", "Rejected": "rejected"}


def register(app: typer.Typer) -> None:
    """Adds the `gate` command group to the main CLI."""
    app.add_typer(gate_app, name="gate")


def _without_label_quality(gate: GateConfig) -> GateConfig:
    from packwise.config import Limit
    from packwise.gate import QUALITY_CRITERIA

    return gate.model_copy(update={c.name: Limit() for c in QUALITY_CRITERIA})


def decision_matrix(result: ReplayResult, policy: str, title: str) -> Table:
    """The policy's decisions as a week x package type table; a cell names the criteria that decided it."""
    table = Table(title=title, show_lines=False)
    table.add_column("week", justify="right")
    for package_type in result.package_types:
        table.add_column(package_type)
    for week in result.weeks:
        cells = []
        for package_type in result.package_types:
            decision = result.decisions[policy][week][package_type]
            deciding = [c.name for c in decision.criteria if c.verdict == decision.outcome]
            style = _STYLE.get(decision.status, "")
            text = f"[{style}]{_SHORT.get(decision.status, decision.status)}[/{style}]"
            cells.append(text + (f"\n{', '.join(deciding)}" if deciding else ""))
        table.add_row(str(week), *cells)
    return table


def differences_table(result: ReplayResult, policies: list[str]) -> Table | None:
    """Cells where the policies' verdicts differ, with the criteria whose verdicts differ; None if none."""
    table = Table(title="Where the policies differ")
    table.add_column("week", justify="right")
    table.add_column("package type")
    for policy in policies:
        table.add_column(policy)
    table.add_column("criteria that differ")
    rows = 0
    for week in result.weeks:
        for package_type in result.package_types:
            differing = result.differing_criteria(week, package_type)
            if not differing:
                continue
            rows += 1
            statuses = [result.status(p, week, package_type) for p in policies]
            table.add_row(str(week), package_type, *[_SHORT.get(s, s) for s in statuses], ", ".join(differing))
    return table if rows else None


@gate_app.command("replay")
def replay(
    weeks: str = typer.Option(..., help="Weeks to replay, e.g. 1-4 (champions start empty before the first)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Config file (today's policy and the data)."),
    proposed: Path | None = typer.Option(
        None,
        help="Config file whose gate section is the proposed policy; without it, today's policy is compared "
        "with itself minus the label-quality criteria.",
    ),
    overrides: list[str] | None = typer.Option(None, "--set", help="Override one key of today's config."),
) -> None:
    """Replay training and the gate over weekly snapshots with two policies; writes nothing to the registry."""
    console, err_console = Console(), Console(stderr=True)
    try:
        from packwise.replay import parse_weeks, replay_gate

        week_list = parse_weeks(weeks)
        cfg = load(config, overrides)
        if proposed is not None:
            proposed_gate, proposed_name = load(proposed, None).gate, f"proposed ({proposed.name})"
        else:
            proposed_gate, proposed_name = _without_label_quality(cfg.gate), "without label quality"
        policies = {"today": cfg.gate, proposed_name: proposed_gate}
        # The training steps print task markers for the local runner; here they would only be noise.
        with err_console.status(f"replaying weeks {weeks} ..."), contextlib.redirect_stdout(io.StringIO()):
            result = replay_gate(cfg, week_list, policies)
    except PackwiseError as err:
        fail(err)
    names = list(policies)
    console.print(Columns([decision_matrix(result, name, f"{name} policy") for name in names]))
    diff = differences_table(result, names)
    if diff is None:
        console.print("The policies decide every week and package type alike.")
    else:
        console.print(diff)
