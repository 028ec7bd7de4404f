"""``packwise registry``: list and inspect model versions; approve, reject or roll back a champion.

Every command reads the same configuration as the pipelines (``--config`` file or the embedded defaults,
plus ``--set key=value`` overrides) and opens the registry it names. Errors a user can cause print one
``error: ...`` line to stderr and exit with code 2.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from packwise.registry import ModelVersion, Registry, Status, open_registry
from packwise_app.command_line import ConfigOpt, SetOpt, check_package_type, load, user_errors

registry_app = typer.Typer(
    name="registry",
    help="List, inspect, approve, reject and roll back model versions.",
    no_args_is_help=True,
    add_completion=False,
)

WHO_HELP = "Who makes the change; default the current user."
ReasonOpt = typer.Option(..., "--reason", "-r", help="Why; kept in the audit trail.")
WhoOpt = typer.Option(None, "--who", help=WHO_HELP)

_STATUS_STYLE = {Status.APPROVED: "green", Status.REJECTED: "red", Status.PENDING: "yellow"}


def _open(config: Path | None, overrides: list[str] | None, package_type: str | None = None) -> Registry:
    """The configured registry; a ConfigError first when `package_type` is not a configured type."""
    cfg = load(config, overrides)
    if package_type is not None:
        check_package_type(cfg, package_type, "package type")
    return open_registry(cfg.registry)


def _who(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _status_text(status: Status) -> Text:
    return Text(str(status), style=_STATUS_STYLE.get(status, ""))


def _metric(version: ModelVersion, name: str) -> str:
    value = version.metrics.get(name)
    return "-" if value is None else f"{value:.4f}"


def _when(iso: str) -> str:
    """``2025-01-31T09:00:00.123+00:00`` as ``2025-01-31 09:00Z``."""
    return f"{iso[:10]} {iso[11:16]}Z" if len(iso) >= 16 else iso


def _print_champion(console: Console, registry: Registry, package_type: str) -> None:
    champion = registry.champion(package_type)
    if champion is None:
        console.print(f"{package_type}: no champion (no Approved version); inference has no model for it")
    else:
        console.print(
            f"{package_type}: champion is v{champion.version} "
            f"(AUC {_metric(champion, 'auc')}, created {_when(champion.created_at)})"
        )


@registry_app.command("list")
def list_versions(
    package_type: str | None = typer.Option(None, "--type", "-t", help="Only this package type."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """List model versions, newest first, with status, champion mark and validation metrics."""
    with user_errors():
        registry = _open(config, overrides)
        versions = registry.list_versions(package_type)
        champions: dict[str, int | None] = {}
        for version in versions:
            if version.package_type not in champions:
                champion = registry.champion(version.package_type)
                champions[version.package_type] = None if champion is None else champion.version
    console = Console(markup=False)  # versions, reasons and URIs are data, printed as text
    if not versions:
        scope = f"of type {package_type} " if package_type else ""
        console.print(f"no model versions {scope}registered yet; run `packwise train` to train candidates")
        return
    # Every column but the reason keeps its full text; a narrow terminal gets the essential columns only.
    wide = console.width >= 120
    columns = ["type", "v", "status", "champ", "AUC", *(["PR-AUC", "log loss"] if wide else []), "created"]
    if wide:
        columns.append("fingerprint")
    table = Table(title="Model versions", box=box.SIMPLE_HEAD, pad_edge=False)
    for header in columns:
        numeric = header in ("v", "AUC", "PR-AUC", "log loss")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    table.add_column("reason", overflow="fold", min_width=16)
    for version in versions:
        cells: dict[str, str | Text] = {
            "type": version.package_type,
            "v": str(version.version),
            "status": _status_text(version.status),
            "champ": "*" if champions.get(version.package_type) == version.version else "",
            "AUC": _metric(version, "auc"),
            "PR-AUC": _metric(version, "pr_auc"),
            "log loss": _metric(version, "log_loss"),
            "created": _when(version.created_at) if wide else version.created_at[:10],
            "fingerprint": version.data_fingerprint[:12],
        }
        table.add_row(*(cells[c] for c in columns), version.reason)
    console.print(table)


@registry_app.command("show")
def show(
    package_type: str = typer.Argument(..., help="Package type, e.g. bag."),
    version: int = typer.Argument(..., help="Version number."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Show one version: every field, its metrics, the gate report and the audit trail."""
    with user_errors():
        registry = _open(config, overrides, package_type)
        found = registry.get(package_type, version)
        champion = registry.champion(package_type)
    console = Console(markup=False)  # versions, reasons and URIs are data, printed as text
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    is_champion = champion is not None and champion.version == found.version
    fields.add_row("package type", found.package_type)
    fields.add_row("version", str(found.version))
    fields.add_row("status", _status_text(found.status))
    fields.add_row("champion", "yes" if is_champion else "no")
    fields.add_row("created", found.created_at)
    fields.add_row("pipeline run", found.run_id or "-")
    fields.add_row("candidate key", found.candidate_key)
    fields.add_row("data fingerprint", found.data_fingerprint)
    fields.add_row("model type", found.model_type)
    fields.add_row("artifact", found.artifact_uri)
    for key, value in sorted(found.label_stats.items()):
        fields.add_row(f"labels: {key}", str(value))
    console.print(Panel(fields, title=f"{found.package_type} v{found.version}"))

    metrics = Table(title="Validation metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in sorted(found.metrics.items()):
        metrics.add_row(key, f"{value:.4f}")
    console.print(metrics)

    report = found.gate_report.strip() or "_no gate report_"
    console.print(Panel(Markdown(report), title="Gate report"))

    audit = Table(title="Audit trail")
    for column in ("at (UTC)", "who", "from", "to"):
        audit.add_column(column, no_wrap=True)
    audit.add_column("reason", overflow="fold", min_width=16)
    for event in found.audit:
        audit.add_row(
            event.at[:19].replace("T", " "),
            event.who,
            "-" if event.from_status is None else str(event.from_status),
            str(event.to_status),
            event.reason,
        )
    console.print(audit)


def _status_command(status: Status, doc: str) -> Callable[..., None]:
    """The ``approve``/``reject`` command: the same arguments, one status to set."""

    def command(
        package_type: str = typer.Argument(..., help="Package type, e.g. bag."),
        version: int = typer.Argument(..., help="Version number."),
        reason: str = ReasonOpt,
        who: str | None = WhoOpt,
        config: Path | None = ConfigOpt,
        overrides: list[str] | None = SetOpt,
    ) -> None:
        with user_errors():
            registry = _open(config, overrides, package_type)
            changed = registry.set_status(package_type, version, status, who=_who(who), reason=reason)
            console = Console(markup=False)  # versions, reasons and URIs are data, printed as text
            console.print(f"{package_type} v{changed.version} is now {changed.status}")
            _print_champion(console, registry, package_type)

    command.__doc__ = doc
    return command


approve = registry_app.command("approve")(
    _status_command(Status.APPROVED, "Approve a version; it becomes champion unless a newer version is Approved.")
)
reject = registry_app.command("reject")(
    _status_command(Status.REJECTED, "Reject a version; if it was champion, the previous Approved version takes over.")
)


@registry_app.command("rollback")
def rollback(
    package_type: str = typer.Argument(..., help="Package type, e.g. bag."),
    to_version: int | None = typer.Option(
        None, "--to", help="Version to restore (must have been Approved); default the previous Approved."
    ),
    reason: str = ReasonOpt,
    who: str | None = WhoOpt,
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Roll the champion back: reject the current one, or restore --to VERSION and reject newer ones."""
    with user_errors():
        registry = _open(config, overrides, package_type)
        registry.rollback(package_type, who=_who(who), reason=reason, to_version=to_version)
        _print_champion(Console(markup=False), registry, package_type)


@registry_app.command("verify")
def verify(
    package_type: str | None = typer.Option(None, "--type", "-t", help="One package type; default all."),
    repair: bool = typer.Option(False, "--repair", help="Put MLflow back in line with the audit trail, audited."),
    who: str | None = WhoOpt,
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Check that MLflow (status tags, descriptions, champion alias) matches the audit trail; exit 1 on drift."""
    from packwise.registry.verify import verify_registry

    with user_errors():
        drift = verify_registry(_open(config, overrides), repair=repair, who=_who(who), package_type=package_type)
    if not drift:
        typer.echo("registry verified: MLflow matches the audit trail")
        return
    for item in drift:
        typer.echo(("repaired " if repair else "drift: ") + item.line())
    if not repair:
        typer.echo("run `packwise registry verify --repair` to put MLflow back in line with the audit trail")
        raise typer.Exit(code=1)
