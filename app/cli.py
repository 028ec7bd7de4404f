"""The `packwise` command line.

Errors a user can cause print one line (`error: ...`) and exit 2, without a traceback. The pipeline
commands import kfp lazily (through `packwise_pipelines`), so `packwise registry ...` and `packwise seed`
stay light.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from packwise.config import PackwiseConfig, dump_default_config
from packwise.errors import ConfigError, PackwiseError
from packwise.files import check_writable_dir
from packwise.lineage import check_run_id
from packwise_app.command_line import (
    CleanHelpGroup,
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
from packwise_app.configuration import load_config

if TYPE_CHECKING:
    from packwise_app.progress_view import TaskProgressView
    from packwise_pipelines.local import LocalRun

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


def _check_notify(cfg: PackwiseConfig) -> None:
    """A webhook whose URL is missing or not http(s) fails here, before the run, not in its last task."""
    if "webhook" in cfg.notify.active:
        from packwise.notify.webhook import webhook_url

        webhook_url(cfg.notify)


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


@app.command()
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


@app.command()
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
    from packwise.run_summary import read_summary

    with user_errors():
        summary = read_summary(cfg.storage.root, run.run_id)
    if summary is not None and not quiet:
        _print_training_table(summary)
    if not quiet:
        console.print(f"run {run.run_id} took {run.seconds:.1f}s; log: {run.log_path}", highlight=False)
    if not run.succeeded:
        _report_failure(run)
        raise typer.Exit(1)


PENDING = "PendingManualApproval"


def _print_training_table(summary: dict[str, Any]) -> None:
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


@app.command()
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
    from packwise.run_summary import read_summary

    with user_errors():
        summary = read_summary(cfg.storage.root, run.run_id)
    if summary is not None and not quiet:
        _print_inference_table(summary)
    if not quiet:
        console.print(f"run {run.run_id} took {run.seconds:.1f}s; log: {run.log_path}", highlight=False)
    if not run.succeeded:
        _report_failure(run)
        err_console.print(
            f"to finish this very run (it loads at most once), pass --run-id {run.run_id}", highlight=False
        )
        raise typer.Exit(1)


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


def _print_inference_table(summary: dict[str, Any]) -> None:
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
        if isinstance(cfg.storage.root, str):
            raise ConfigError(
                f"packwise gc prunes a local storage.root; {cfg.storage.root} is an object store: expire "
                "snapshots/ and inference/extracts/ with a bucket lifecycle rule"
            )
        from packwise.registry import open_registry
        from packwise.storage_gc import collect_garbage

        fingerprints = {v.data_fingerprint for v in open_registry(cfg.registry).list_versions()}
        result = collect_garbage(cfg.storage.root, cfg.storage.cache_root, fingerprints, keep, dry_run)
    except PackwiseError as err:
        fail(err)
    table = Table("kind", "directory", "MiB", "action")
    for c in result.candidates:
        action = f"keep: {c.keep_reason}" if c.kept else ("would delete" if dry_run else "deleted")
        table.add_row(c.kind, str(c.path.relative_to(cfg.storage.workspace)), f"{c.bytes / 2**20:.1f}", action)
    console.print(table)
    verb = "would free" if dry_run else "freed"
    console.print(
        f"{len(result.deleted)} of {len(result.candidates)} directories, {verb} {result.freed_bytes / 2**20:.1f} MiB",
        highlight=False,
    )


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
            _print_inference_table(summary)
        else:
            _print_training_table(summary)
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
