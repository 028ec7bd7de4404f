"""`packwise init --table T --label-table L`: a starter configuration for the user's own tables.

The warehouse comes from the usual -c/--set (DuckDB at warehouse.path by default; postgres or redshift
through their settings); the tables are only read. See `packwise.starter` for what is decided and how.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

from packwise.errors import ConfigError, PackwiseError
from packwise_app.command_line import ConfigOpt, SetOpt, fail, load

console = Console(highlight=False, soft_wrap=True)


def init(
    table: str = typer.Option(..., "--table", "-t", metavar="TABLE", help="Products table: one row per product."),
    label_table: str = typer.Option(
        ..., "--label-table", "-l", metavar="TABLE", help="Labels table: one row per product and package type."
    ),
    out: Path = typer.Option(Path("packwise.yaml"), "--out", "-o", help="Where to write the configuration."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    id_column: str | None = typer.Option(None, metavar="COLUMN", help="Product id (default: the shared unique one)."),
    type_column: str | None = typer.Option(None, metavar="COLUMN", help="Labels: the package type column."),
    label_column: str | None = typer.Option(None, metavar="COLUMN", help="Labels: the 0/1 suitability column."),
    week_column: str | None = typer.Option(None, metavar="COLUMN", help="Labels: the week a label arrived."),
    added_column: str | None = typer.Option(
        None, metavar="COLUMN", help="Products: when a product was added (the daily watermark)."
    ),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Inspect your products and labels tables and write a configuration for them (features, queries, types)."""
    from packwise.config import load_config as parse_file
    from packwise.starter import inspect_tables, starter_yaml
    from packwise.warehouse import open_warehouse

    try:
        if out.exists() and not force:
            raise ConfigError(f"{out} exists; pass --force to overwrite it or --out to write elsewhere")
        as_written = load(config, overrides, resolve=False)
        cfg = as_written.resolved()
        if cfg.warehouse.backend == "duckdb" and not cfg.warehouse.path.exists():
            raise ConfigError(
                f"no DuckDB warehouse at {cfg.warehouse.path}; point warehouse.path at yours "
                "(--set warehouse.path=FILE) or set warehouse.backend"
            )
        with open_warehouse(cfg.warehouse, read_only=True) as wh:
            found = inspect_tables(
                wh,
                table,
                label_table,
                id_column=id_column,
                type_column=type_column,
                label_column=label_column,
                week_column=week_column,
                added_column=added_column,
            )
        section = as_written.warehouse.model_dump(
            mode="json", exclude_defaults=True, exclude={"products_query", "labels_query", "label_weeks_query"}
        )
        if "path" not in section and as_written.warehouse.backend == "duckdb":
            section["path"] = str(as_written.warehouse.path)
        command = (
            shlex.join(["packwise", "init", *sys.argv[2:]])
            if sys.argv[1:2] == ["init"]
            else (f"packwise init --table {table} --label-table {label_table}")
        )
        storage = as_written.storage.model_dump(mode="json", exclude_defaults=True)
        text = starter_yaml(found, section, command, storage)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        parse_file(tmp)  # what it wrote must load: never leave a config that does not
        tmp.replace(out)
    except PackwiseError as err:
        fail(err)
    kinds = {k: found.of_kind(k) for k in ("numeric", "boolean", "categorical", "text")}
    console.print(
        f"wrote {out}: {found.n_products:,} products ({table}, id {found.id_column}), {found.n_labels:,} labels "
        f"({label_table}), package types {', '.join(t for t, _, _ in found.package_types)}; features: "
        + ", ".join(f"{len(v)} {k}" for k, v in kinds.items())
        + ("" if found.added_column else "; no added_at column: monthly inference only")
    )
    week = "1" if not found.week_column else "N"
    console.print(f"next: packwise train -c {out} --week {week}, then packwise infer -c {out} --mode monthly")


def register(app: typer.Typer) -> None:
    """Adds `packwise init` to the main app."""
    app.command("init")(init)
