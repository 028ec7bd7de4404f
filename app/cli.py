"""The `packwise` command line.

Errors a user can cause print one line (`error: ...`) and exit 2, without a traceback. The pipeline
commands import kfp lazily (through `packwise_pipelines`), so `packwise registry ...` and `packwise seed`
stay light. This module holds the app, `config`, `compile`, `gc`, `migrate-predictions` and `runs`; the
other commands live in `*_cli` modules that register themselves on the app in the order `packwise --help`
lists them.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from packwise.config import PackwiseConfig, dump_default_config
from packwise.errors import ConfigError, PackwiseError
from packwise.lineage import check_run_id
from packwise_app.command_line import CleanHelpGroup, ConfigOpt, SetOpt, err_console, fail, load
from packwise_app.configuration import load_config
from packwise_app.run_cli import print_inference_table, print_training_table

app = typer.Typer(
    name="packwise",
    cls=CleanHelpGroup,
    help="Packwise: chooses how each product is packed. Training and inference pipelines on Kubeflow Pipelines.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show or write the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()


def _mount_registry() -> None:
    from packwise_app.registry_cli import registry_app

    app.add_typer(registry_app, name="registry", help="List, inspect, approve, reject or roll back model versions.")


_mount_registry()


def _mount_cluster() -> None:
    from packwise_app.cluster_cli import register

    register(app)


_mount_cluster()


def _mount_alarms() -> None:
    from packwise_app.alarms_cli import alarms_app

    app.add_typer(alarms_app, name="alarms")


_mount_alarms()


def _mount_gate() -> None:
    from packwise_app.gate_cli import register

    register(app)


_mount_gate()


def _mount_init() -> None:
    from packwise_app.init_cli import register

    register(app)


_mount_init()


@config_app.command("show")
def config_show(config: Path | None = ConfigOpt, overrides: list[str] | None = SetOpt) -> None:
    """Print the effective configuration (file + overrides over the embedded defaults)."""
    try:
        cfg = load_config(config, overrides or [])
    except PackwiseError as err:
        fail(err)
    import yaml

    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, width=1_000), end="")


@config_app.command("reference")
def config_reference_cmd() -> None:
    """Print the configuration reference (every key, its default and meaning) as Markdown."""
    from packwise.config import config_reference

    print(config_reference())


@config_app.command("init")
def config_init(path: Path = typer.Argument(Path("packwise.yaml"))) -> None:
    """Write the embedded defaults to PATH as a starting point."""
    if path.exists():
        fail(ConfigError(f"{path} exists; remove it or choose another path"))
    path.write_text(dump_default_config())
    console.print(f"wrote {path}")


def _mount_local_runs() -> None:
    from packwise_app.run_cli import register as register_runs
    from packwise_app.seed_cli import register as register_seed

    register_seed(app)
    register_runs(app)


_mount_local_runs()


CLUSTER_DEFAULTS = (
    "storage.root=s3://mlpipeline/packwise/storage",
    "warehouse.backend=postgres",
    "warehouse.dsn_env=PACKWISE_WAREHOUSE_DSN",
    "registry.tracking_uri=http://mlflow.packwise.svc.cluster.local:5000",
    "registry.artifact_root=mlflow-artifacts:/packwise",
)
"""What `packwise compile` builds without --config: the storage and registry of manifests/overlays/kind."""


def _cluster_config(config: Path | None, overrides: list[str] | None) -> PackwiseConfig:
    """The config a cluster build compiles; a ConfigError when it names a path or registry of this machine."""
    cfg = load(config, overrides, resolve=False)
    root = cfg.storage.root
    # a local directory, even an absolute one, is each pod's own disk: cluster tasks share only the object store
    local = [f"storage.root {str(root)!r}"] if isinstance(root, Path) else []
    if cfg.warehouse.backend == "duckdb":
        local.append(f"warehouse.path {str(cfg.warehouse.path)!r} (a DuckDB file)")
    if cfg.registry.backend == "mlflow" and cfg.registry.tracking_uri is None:
        local.append("registry.tracking_uri unset (an sqlite file under storage.root)")
    if local:
        raise ConfigError(
            f"compile builds for a cluster, but {'; '.join(local)} would be this machine's; pass "
            "-c cluster.yaml (e.g. manifests/overlays/kind/packwise.yaml) or --set storage.root=s3://bucket/prefix "
            "--set warehouse.backend=postgres --set warehouse.dsn_env=PACKWISE_WAREHOUSE_DSN "
            "--set registry.tracking_uri=http://mlflow:5000"
        )
    return cfg.resolved()


@app.command("compile")
def compile_pipelines(
    out_dir: Path = typer.Option(Path("build"), "--out", "-o", help="Directory for the IR YAML files."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """Write the compiled IR YAML of the pipelines (submit with `kfp run create`).

    Without --config the in-cluster defaults of `manifests/overlays/kind` are compiled (storage.root on
    KFP's MinIO, the PostgreSQL warehouse, the cluster's MLflow), never this machine's paths; --set
    overrides apply on top.
    """
    try:
        if config is None:
            overrides = [*CLUSTER_DEFAULTS, *(overrides or [])]
            err_console.print(
                "compiling the in-cluster defaults (" + ", ".join(CLUSTER_DEFAULTS) + "); pass -c cluster.yaml "
                "for your cluster's",
                highlight=False,
                soft_wrap=True,
            )
        cfg = _cluster_config(config, overrides)
        from packwise_pipelines.compile import compile_for_cluster

        written = compile_for_cluster(cfg, out_dir)
    except PackwiseError as err:
        fail(err)
    for path in written:
        console.print(f"wrote {path}")


@app.command("gc")
def gc(
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
    keep: int = typer.Option(3, help="Newest directories of each kind (snapshot, extract, kfp run) always kept."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted; delete nothing."),
) -> None:
    """Prune snapshot, inference extract and kfp output directories under storage.root (README, "packwise gc")."""
    try:
        cfg = load(config, overrides)
        from packwise.registry import open_registry
        from packwise.storage import check_storage_root
        from packwise.storage_gc import collect_garbage

        if cfg.storage.is_object_store:
            check_storage_root(cfg.storage.root, write=not dry_run)
        fingerprints = {v.data_fingerprint for v in open_registry(cfg.registry).list_versions()}
        result = collect_garbage(
            cfg.storage.root, cfg.storage.cache_root, fingerprints, keep, dry_run, cfg.storage.pipeline_root
        )
    except PackwiseError as err:
        fail(err)
    table = Table("kind", "directory", "MiB", "action")
    # relative to storage.root (a bucket) or to the local workspace, as the rule names them
    root = str(cfg.storage.root).rstrip("/") + "/"
    for c in result.candidates:
        action = f"keep: {c.keep_reason}" if c.kept else ("would delete" if dry_run else "deleted")
        shown = c.path.removeprefix(root) if isinstance(c.path, str) else c.path.relative_to(cfg.storage.workspace)
        table.add_row(c.kind, str(shown), f"{c.bytes / 2**20:.1f}", action)
    console.print(table)
    verb = "would free" if dry_run else "freed"
    console.print(
        f"{len(result.deleted)} of {len(result.candidates)} directories, {verb} {result.freed_bytes / 2**20:.1f} MiB",
        highlight=False,
    )


@app.command("migrate-predictions")
def migrate_predictions(
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the rows that would move; change nothing."),
) -> None:
    """Move an earlier release's predictions table on PostgreSQL into the current table and history
    (README, "Output tables"): one transaction, every row kept; loads wait for it."""
    try:
        cfg = load(config, overrides)
        from packwise.prediction_tables import Migration, migrate
        from packwise.warehouse import open_warehouse

        backend = cfg.warehouse.backend
        done = Migration("one table here")
        if backend == "postgres":  # DuckDB and Redshift keep one table: nothing to open
            with open_warehouse(cfg.warehouse, read_only=dry_run) as wh:
                done = migrate(wh, dry_run=dry_run)
    except PackwiseError as err:
        fail(err)
    messages = {
        "one table here": f"nothing to migrate: the {backend} warehouse keeps predictions in one table",
        "already": "nothing to migrate: predictions is already a view of predictions_current and predictions_history",
        "no table": "nothing to migrate: no predictions table yet (the first load creates the new layout)",
        "would migrate": f"would move {done.current:,} current and {done.history:,} superseded rows",
        "migrated": f"moved {done.current:,} current rows to predictions_current and {done.history:,} superseded rows "
        "to predictions_history; predictions is now a view of both",
    }
    console.print(messages[done.state], highlight=False)


@app.command("runs")
def show_runs(
    run_id: str | None = typer.Argument(None, metavar="[RUN_ID]", help="One run (as printed by train or infer)."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many recent runs to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (for machines) instead of a table."),
    config: Path | None = ConfigOpt,
    overrides: list[str] | None = SetOpt,
) -> None:
    """List recent runs, or show one run's stored summary (storage.root/runs)."""
    from packwise.run_summary import outcome, read_summary, recent_summaries

    try:
        cfg = load(config, overrides)
        if run_id is None:
            summaries = recent_summaries(cfg.storage.root, limit)
        else:
            check_run_id(run_id, "RUN_ID")
            found = read_summary(cfg.storage.root, run_id)
            if found is None:
                raise PackwiseError(
                    f"no summary for run {run_id!r} under {cfg.storage.root}/runs; `packwise runs` lists them"
                )
            summaries = [found]
    except PackwiseError as err:
        fail(err)
    if as_json:
        print(json.dumps(summaries if run_id is None else summaries[0], indent=2, sort_keys=True, default=str))
        return
    if run_id is not None:
        summary = summaries[0]
        state = summary.get("pipeline_state") or "-"
        console.print(f"run {run_id}: {state}", highlight=False, soft_wrap=True)
        if summary.get("error"):
            console.print(f"  error: {summary['error']}", highlight=False, soft_wrap=True)
        if "mode" in summary:
            print_inference_table(summary)
        else:
            print_training_table(summary)
        return
    if not summaries:
        console.print(f"no runs under {cfg.storage.root}/runs yet; `packwise train --week 1` makes the first")
        return
    from rich import box

    title = f"recent runs ({cfg.storage.root}/runs)"
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False, collapse_padding=True)
    table.add_column("run id", no_wrap=True)
    table.add_column("what", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("outcome", overflow="fold")
    for summary in summaries:
        what = str(summary["mode"]) if "mode" in summary else f"week {summary.get('week')}"
        state = str(summary.get("pipeline_state") or "-").lower()
        result = outcome(summary).replace("PendingManualApproval", "Pending")
        table.add_row(str(summary.get("run_id")), what, state, result)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
