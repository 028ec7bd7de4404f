"""`packwise seed`: the synthetic catalogue and weekly label history (registered on the main app by `cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError, PackwiseError
from packwise.files import check_writable_dir
from packwise_app.command_line import ConfigOpt, SetOpt, fail, load

console = Console()


def seed(
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
    products: int = typer.Option(25_000, help="Products in the catalogue."),
    weeks: int = typer.Option(4, help="Weeks of label history."),
    labels_per_week: int = typer.Option(4_000, help="New labels per package type per week."),
    seed_value: int = typer.Option(7, "--seed", help="Random seed; the same seed gives the same data."),
    flip_rate: float = typer.Option(0.03, help="Share of all shipment labels flipped at random (baseline noise)."),
    shift: str | None = typer.Option(None, help="TYPE:WEEK:DELTA - that week's positive rate moves by DELTA."),
    corrupt: str | None = typer.Option(
        None, help="TYPE:WEEK:FRACTION - that share of the week's labels stuck at 1 (a stuck feed)."
    ),
    noise: str | None = typer.Option(
        None, help="TYPE:WEEK:FRACTION - that share of the week's labels random, at the same positive rate."
    ),
    rewrite: str | None = typer.Option(
        None, help="TYPE:WEEK:FRACTION - in WEEK, that share of earlier weeks' labels re-stated at random."
    ),
    label_drop: str | None = typer.Option(None, help="TYPE:WEEK:FRACTION - that share of the type's labels lost."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success (for scripts)."),
    add_new: int | None = typer.Option(
        None,
        "--add-products",
        metavar="N",
        help="Instead of re-seeding: append N new, unlabelled products dated after the newest product and the "
        "last inference run (the next daily run scores them); nothing else changes.",
    ),
) -> None:
    """Create the synthetic catalogue and weekly label history in the warehouse (replaces it)."""
    try:
        cfg = load(config, overrides)
        if add_new is not None:
            _add_products(cfg, add_new, seed_value, bool(shift or corrupt or noise or rewrite or label_drop))
            return
        from packwise.synthetic import SeedSpec, seed_warehouse
        from packwise.warehouse import open_warehouse

        spec_data: dict[str, Any] = {
            "seed": seed_value,
            "n_products": products,
            "weeks": weeks,
            "labels_per_week": labels_per_week,
            "noise": flip_rate,
            "package_types": cfg.package_type_names,
        }
        for name, raw, field_name in (
            ("shift", shift, "positive_rate_delta"),
            ("corrupt", corrupt, "fraction"),
            ("label_drop", label_drop, "fraction"),
            ("label_noise", noise, "fraction"),
            ("rewrite", rewrite, "fraction"),
        ):
            if raw:
                spec_data[name] = _parse_knob(name, raw, field_name)
        try:
            spec = SeedSpec.model_validate(spec_data)
        except ValueError as err:
            raise ConfigError(f"seed: {str(err).splitlines()[-1].strip()}") from None
        check_writable_dir(cfg.storage.root, "storage.root")
        check_writable_dir(cfg.warehouse.path.parent, "warehouse.path")
        from packwise_app.progress_view import SeedProgressView

        view = SeedProgressView(quiet=quiet)  # a bar on a terminal, plain lines on a pipe, nothing with --quiet
        with view.showing(), open_warehouse(cfg.warehouse) as warehouse:
            summary = seed_warehouse(warehouse, spec, on_step=view)
    except PackwiseError as err:
        fail(err)
    if not quiet:
        _print_seed_table(str(cfg.warehouse.path), summary)


def _print_seed_table(where: str, summary: Any) -> None:
    """The seed summary: totals on one line, then labels and positive rate per package type."""
    console.print(
        Text(f"seeded {where}: {summary.n_products:,} products, {summary.n_labels:,} labels over {summary.weeks} weeks "
        f"({summary.n_feedback_labels:,} from feedback)"),
        highlight=False,
    )
    table = Table("package type", "labels", "positive rate")
    for package_type, count in summary.labels_per_type.items():
        rate = summary.positive_rate.get(package_type)
        table.add_row(package_type, f"{count:,}", "-" if rate is None else f"{rate:.1%}")
    console.print(table)


def _add_products(cfg: PackwiseConfig, n: int, seed_value: int, knobs: bool) -> None:
    from packwise.synthetic import add_products_after_last_run
    from packwise.warehouse import open_warehouse

    if knobs:
        raise ConfigError("--add-products adds unlabelled products; the label knobs apply only to a full seed")
    if n < 1:
        raise ConfigError(f"--add-products {n}: add at least 1 product")
    if cfg.warehouse.backend == "duckdb" and not cfg.warehouse.path.exists():
        raise ConfigError(f"no warehouse at {cfg.warehouse.path}; run `packwise seed` first")
    with open_warehouse(cfg.warehouse) as warehouse:
        added, added_at = add_products_after_last_run(warehouse, n, seed_value)
    console.print(
        f"added {added:,} products to {cfg.warehouse.path} (added_at {added_at:%Y-%m-%d %H:%M})",
        highlight=False,
        soft_wrap=True,
    )


def _flag(knob: str) -> str:
    return {"label_noise": "noise"}.get(knob, knob.replace("_", "-"))


def _parse_knob(name: str, raw: str, field_name: str) -> dict[str, Any]:
    parts = raw.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--{_flag(name)} {raw!r}: expected TYPE:WEEK:VALUE, e.g. mailer:3:0.4")
    try:
        return {"package_type": parts[0], "week": int(parts[1]), field_name: float(parts[2])}
    except ValueError:
        raise ConfigError(f"--{_flag(name)} {raw!r}: WEEK must be an integer and VALUE a number") from None


def register(app: typer.Typer) -> None:
    """Adds `packwise seed` to the main app."""
    app.command("seed")(seed)
