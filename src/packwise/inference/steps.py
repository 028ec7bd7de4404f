"""The inference job's steps: one plain function per inference component, named like it.

extract (products of the mode, streamed into a content-addressed parquet file) and resolve (the model of
every package type, in `packwise.inference.models`) run side by side; prepare checks the products against
what those models read; shard cuts them into files of a target size; score runs once per shard; load checks
that every product was scored once (`collect_scores`) and writes the predictions exactly once; notify
reports. Each function takes paths and validated config objects and returns a JSON-friendly dict; all of it
runs without KFP.

Run records under ``storage.root/runs`` tie a run together for the exit handler (which cannot take the
outputs of the tasks it guards): ``<run_id>.json`` (extract), ``<run_id>.models.json`` (resolve),
``<run_id>.load.json`` (load) and ``<run_id>.summary.json`` (notify).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packwise import progress
from packwise.config import (
    ComputeConfig,
    FeatureConfig,
    InferenceConfig,
    SageMakerConfig,
    WarehouseConfig,
)
from packwise.errors import ConfigError, DataValidationError, PackwiseError, WarehouseError
from packwise.files import publish_directory, sha256_file
from packwise.inference.models import model_versions
from packwise.inference.shards import MANIFEST_FILE, PRODUCTS_FILE, inference_dir, shard_name
from packwise.progress import task_report

if TYPE_CHECKING:
    from packwise.warehouse import Warehouse

MODES = ("daily", "monthly")
# The daily query's `$since` before any watermark exists: older than any product.
EPOCH = datetime(1, 1, 1)


def query_key(mode: str) -> str:
    """The configuration key of the products query a mode runs."""
    return "inference.new_products_query" if mode == "daily" else "inference.inventory_query"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: use daily (new products) or monthly (whole inventory)")
    return mode


def daily_needs(inference: InferenceConfig, problem: str) -> str:
    """The one-line message of a daily run that cannot tell new products from old ones (`problem` first)."""
    column = inference.watermark_column
    return (
        f"daily inference: {problem}; daily mode scores the products added after the last run, so it needs a "
        f"timestamp column saying when each product was added ({column!r}, inference.watermark_column): add it "
        f"to your products table and to inference.new_products_query (`WHERE {column} > $since`), or name yours "
        "in inference.watermark_column; --mode monthly needs none"
    )


def check_daily_query(warehouse: Warehouse, inference: InferenceConfig) -> None:
    """Fails before a daily run when its query fails or returns no `inference.watermark_column` column.

    Runs ``inference.new_products_query`` inside a false predicate (no rows are read).

    Raises:
        DataValidationError: The query fails (e.g. on a missing column) or lacks the watermark column.
    """
    from packwise.warehouse import QueryError

    try:
        found = warehouse.fetch_df(
            f"SELECT * FROM ({inference.new_products_query}) AS q WHERE 1 = 0", {"since": EPOCH}
        )
    except QueryError as err:
        raise DataValidationError(daily_needs(inference, f"inference.new_products_query failed ({err})")) from None
    if inference.watermark_column not in found.columns:
        column = inference.watermark_column
        raise DataValidationError(daily_needs(inference, f"inference.new_products_query returns no {column!r}"))


# -- extract ---------------------------------------------------------------------------------------


def _largest(path: Path, column: str) -> datetime | None:
    """The largest value of a timestamp column, read one column at a time."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path, pre_buffer=False)
    if column not in source.schema_arrow.names:
        return None
    best = None
    for batch in source.iter_batches(columns=[column], batch_size=1 << 20, use_threads=False):
        value = pc.max(batch.column(0)).as_py()
        if value is not None and (best is None or value > best):
            best = value
    if best is not None and not isinstance(best, datetime):
        raise DataValidationError(
            f"inventory: column {column!r} has type {source.schema_arrow.field(column).type}, expected a "
            "timestamp; cast it in the products query or set inference.watermark_column"
        )
    return best


def extract_products(
    warehouse: WarehouseConfig, inference: InferenceConfig, storage_root: str | Path, mode: str, run_id: str
) -> dict[str, Any]:
    """Unloads the products of a run into ``inference/extracts/<fingerprint>/products.parquet``.

    Monthly: every product (``inference.inventory_query``). Daily: the products added after the daily
    watermark (``inference.new_products_query`` with ``$since``; see `predictions.daily_since`). Rows are
    streamed out of the warehouse ordered by product_id, so the same products give the same bytes (and
    the same directory, which every later task keys its cache on) and duplicates sit side by side.

    With an ``s3://`` root the extract is written in the task's temporary mirror and uploaded (manifest last;
    an existing one is kept); ``extract_dir`` is then its URI.

    Returns:
        The run record: mode, since, watermark (largest `added_at`, None when empty), fingerprint,
        extract_dir, n_products.
    """
    from packwise.faults import maybe_fail
    from packwise.lineage import remove_run_record, write_run_record
    from packwise.predictions import check_run_mode, daily_since
    from packwise.storage import task_storage
    from packwise.warehouse import QueryError, open_warehouse

    with task_report("extract-products", None), task_storage(storage_root) as storage:
        maybe_fail("extract-products")
        check_mode(mode)
        with open_warehouse(warehouse, read_only=True) as wh:
            check_run_mode(wh, run_id, mode)  # before any file of this run is touched
        remove_run_record(storage_root, f"{run_id}.load")  # a stale record of an earlier attempt of this run id
        key = query_key(mode)
        sql = inference.new_products_query if mode == "daily" else inference.inventory_query
        root = inference_dir(storage.local_root) / "extracts"
        with open_warehouse(warehouse, read_only=True) as wh:
            since = daily_since(wh) if mode == "daily" else None
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-extract-", dir=root))
            progress.phase("querying")
            try:
                try:
                    n = wh.copy_query_to_parquet(
                        sql, {"since": since or EPOCH}, tmp / PRODUCTS_FILE, order_by=("product_id",), fast=True
                    )
                except QueryError as err:
                    raise WarehouseError(f"{key} failed: {err}; fix {key} in the config") from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        try:
            if n == 0 and mode == "monthly":  # daily: no new products is an ordinary day
                raise DataValidationError(
                    f"inventory: {key} returned no products; a monthly run scores the whole inventory, "
                    f"so check {key} and the warehouse"
                )
            # monthly scores everything: without the column there is simply no watermark to record
            watermark = _largest(tmp / PRODUCTS_FILE, inference.watermark_column)
            if watermark is None and n > 0 and mode == "daily":
                raise DataValidationError(
                    daily_needs(inference, f"column {inference.watermark_column!r} is missing or empty in {key}")
                )
            fingerprint = sha256_file(tmp / PRODUCTS_FILE)
            final = root / fingerprint
            if not final.exists():
                (tmp / MANIFEST_FILE).write_text(
                    json.dumps({"fingerprint": fingerprint, "n_products": n}, indent=2, sort_keys=True) + "\n"
                )
                publish_directory(tmp, final, MANIFEST_FILE)  # or another run of the same data won the race
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        record = {
            "run_id": run_id,
            "pipeline": "inference",
            "mode": mode,
            "since": None if since is None else since.isoformat(),
            "watermark": None if watermark is None else watermark.isoformat(),
            "fingerprint": fingerprint,
            "extract_dir": storage.stage_out(final, MANIFEST_FILE),
            "n_products": n,
            "query_key": key,
        }
        write_run_record(storage_root, run_id, record)
        return record


# -- prepare ---------------------------------------------------------------------------------------


def _serving_features(models: Mapping[str, Any]) -> tuple[FeatureConfig, bool, dict[str, str]]:
    """A feature config covering every column any model reads, and which model first needs each."""
    from packwise.features import FeatureSpec

    groups: dict[str, list[str]] = {"numeric": [], "boolean": [], "categorical": [], "derived": []}
    text: str | None = None
    needed_by: dict[str, str] = {}
    for package_type, model in models["models"].items():
        spec = FeatureSpec.from_json(model["spec"])
        label = f"{package_type} v{model['version']}"
        for group, cols in (
            ("numeric", spec.numeric),
            ("boolean", spec.boolean),
            ("categorical", list(spec.categorical)),
            ("derived", spec.derived),
        ):
            groups[group] += [c for c in cols if c not in groups[group]]
        text = text or next(iter(spec.text_columns), None)
        for col in spec.input_columns:
            needed_by.setdefault(col, label)
    try:
        features = FeatureConfig(
            numeric=groups["numeric"],
            boolean=groups["boolean"],
            categorical=groups["categorical"],
            derived=groups["derived"],
            text=text or "title",
        )
    except ValueError as err:
        raise PackwiseError(
            f"the resolved models disagree on their feature columns ({str(err).splitlines()[-1].strip()}); "
            "pin versions trained with the same features"
        ) from None
    return features, text is not None, needed_by


def prepare_products(
    extract_dir: str | Path, models: Mapping[str, Any], mode: str, batch_rows: int
) -> dict[str, Any]:
    """Checks the extracted products against what the resolved models read, one batch at a time.

    Every column a model reads must be present with a usable type (`validation.validate_products_frame`,
    batch by batch); product ids must be present and unique. The extract is ordered by product_id, so a
    duplicate is the row after its twin, in one batch or across two (`check_sorted_product_ids`): the
    whole inventory is checked in the memory of one batch.

    `extract_dir` is a local directory or an ``s3://`` URI (its products file is staged into the task).

    Returns:
        The scoring plan: the products file, its row count, the columns to score with and the models
        (as URIs when the extract is one).

    Raises:
        DataValidationError: On the first problem, naming the column or product and the query to fix.
    """
    import pyarrow.parquet as pq

    from packwise.column_checks import pandas_kind
    from packwise.faults import maybe_fail
    from packwise.storage import join, task_storage
    from packwise.validation import (
        PRODUCT_ID,
        check_sorted_product_ids,
        merge_counts,
        raise_on_bad_values,
        suspicious_warnings,
        validate_products_frame,
    )

    with task_report("prepare-products", None), task_storage(extract_dir, write=False) as storage:
        maybe_fail("prepare-products")
        key = query_key(check_mode(mode))
        products_uri = join(extract_dir, PRODUCTS_FILE)
        products_path = storage.stage_in(products_uri)
        features, needs_text, needed_by = _serving_features(models)
        have = set(pq.read_schema(products_path).names)
        if PRODUCT_ID not in have:
            raise DataValidationError(f"inventory: column 'product_id' is missing from products; add it to {key}")
        for col, who in needed_by.items():
            if col not in have:
                raise DataValidationError(
                    f"inventory: feature column {col!r} is missing from products (the {who} model reads it); "
                    f"add it to {key}"
                )
        columns = [PRODUCT_ID, *[c for c in needed_by if c != PRODUCT_ID]]
        # Categorical columns read dictionary-encoded: a pandas Categorical of a dozen strings, not a string
        # object per row (the text column, free text, stays plain).
        categorical = [c for c in features.categorical if c in columns and c != features.text]
        source = pq.ParquetFile(products_path, pre_buffer=False, read_dictionary=categorical)
        n_rows = 0
        last_id: Any = None
        value_counts: dict[str, dict[str, int]] = {}
        total_rows = source.metadata.num_rows
        for batch in source.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
            progress.advance(n_rows, total_rows, "rows")
            ids = batch.column(PRODUCT_ID)
            last_id = check_sorted_product_ids("inventory", ids, last_id, key)
            # The ids are checked in Arrow above and typed on their first row here: no pandas copy of a
            # batch of unique strings (0.2 s of a 5M-product prepare).
            sample = ids.slice(0, 1).to_pandas()
            frame = batch.drop_columns([PRODUCT_ID]).to_pandas()
            counts = validate_products_frame(
                frame, features, needs_text, source="inventory", query_key=key, check_ids=False,
                kinds_of={PRODUCT_ID: (pandas_kind(sample), str(sample.dtype))},
            )  # fmt: skip
            merge_counts(value_counts, counts)
            n_rows += len(frame)
        progress.advance(n_rows, n_rows, "rows")
        raise_on_bad_values("inventory", value_counts, key)  # infinite values are refused, never scored
        warnings = suspicious_warnings(value_counts)
        for line in warnings:
            print(f"prepare-products: warning: {line}", flush=True)
        return {
            "extract_dir": str(extract_dir),
            "products_path": products_uri,
            "n_products": n_rows,
            "columns": columns,
            "mode": mode,
            "package_types": list(models["package_types"]),
            "models": dict(models["models"]),
            "suspicious_rows": dict(sorted(value_counts.get("suspicious", {}).items())),
            "warnings": warnings,
        }


# -- score -----------------------------------------------------------------------------------------


def score_shard(
    shard_path: str | Path,
    plan: Mapping[str, Any],
    compute: ComputeConfig,
    sagemaker: SageMakerConfig | None,
    inference: InferenceConfig,
    out_path: Path,
) -> dict[str, Any]:
    """Scores one shard with every package type's model where ``compute.inference`` says; see `packwise.compute`.

    `shard_path` and the plan's model files are local paths or ``s3://`` URIs (staged into the task).

    Returns:
        The shard's name, rows, recommended type counts, unseen category counts and timings.
    """
    from packwise.compute import open_compute
    from packwise.faults import maybe_fail
    from packwise.storage import join, parent, read_bytes, task_storage

    name = shard_name(shard_path)
    with task_report("score-shard", name), task_storage(parent(shard_path), write=False) as storage:
        maybe_fail("score-shard", name)
        local_shard = storage.stage_in(shard_path)
        if storage.remote:
            models = {t: {**m, "path": str(storage.stage_in(m["path"]))} for t, m in plan["models"].items()}
            plan = {**plan, "models": models}
        # how many shards the run scores (the shard directory's manifest): a lone shard may take the cores
        # a second would have had (`packwise.cores.shard_threads`)
        manifest = read_bytes(join(parent(shard_path), MANIFEST_FILE))
        plan = {**plan, "n_shards": len(json.loads(manifest.decode())["shards"]) if manifest else 0}
        stats = open_compute("inference", compute, sagemaker, inference).score_shard(local_shard, plan, out_path)
        return {"shard": name, **stats}


# -- collect (the load's first check) --------------------------------------------------------------


def collect_scores(scored: Sequence[tuple[Path, Mapping[str, Any]]], plan: Mapping[str, Any]) -> dict[str, Any]:
    """Checks that every product was scored once and sums the shards' statistics: the first thing the load
    task does (`packwise.inference.load.load_predictions`), before it opens the warehouse. Reads each file's
    footer only.

    Args:
        scored: Each shard's scored file and its `score_shard` statistics.
        plan: The scoring plan.

    Returns:
        The load manifest: files, row count, recommended type counts, unseen counts, model versions.

    Raises:
        PackwiseError: A scored file is missing, or the rows do not add up to the products prepared.
    """
    import pyarrow.parquet as pq

    from packwise.score_stats import ScoreStats  # not packwise.scoring: no tree engine in this task

    total = ScoreStats(recommended={t: 0 for t in plan["package_types"]})
    files: list[str] = []
    for path, stats in scored:
        if not Path(path).exists():
            raise PackwiseError(f"load: scored shard {path} is missing; re-run the pipeline")
        rows = pq.ParquetFile(path).metadata.num_rows
        if rows != int(stats["rows"]):
            raise PackwiseError(f"load: {path} holds {rows} rows, its task reported {stats['rows']}")
        total.add(ScoreStats.model_validate(dict(stats)))
        files.append(str(path))
    if total.rows != int(plan["n_products"]):
        raise PackwiseError(
            f"load: {total.rows} products scored, {plan['n_products']} prepared; re-run the pipeline"
        )
    return {
        "files": files,
        "n_products": total.rows,
        "recommended": total.recommended,
        "unseen": total.unseen,
        "package_types": list(plan["package_types"]),
        "models": model_versions(plan),
        "seconds_scoring": round(total.seconds, 3),
        "seconds_predict": round(total.seconds_predict, 3),
        "expected_cost": total.expected_cost,
    }
