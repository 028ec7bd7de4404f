"""Shard planning: the layout of an extract's files, shards of a target size, the models a shard is scored with.

``shard_products`` cuts the prepared products into parquet shards of about ``inference.shard_rows`` rows or
``inference.shard_bytes`` bytes (content-keyed: the same products and layout reuse the same shards);
``load_scoring_models`` loads the plan's model files for a shard's scorer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packwise import progress
from packwise.config import InferenceConfig
from packwise.files import publish_directory
from packwise.progress import task_report

PRODUCTS_FILE = "products.parquet"
MANIFEST_FILE = "manifest.json"
SHARD_PREFIX = "shard-"


def inference_dir(storage_root: Path) -> Path:
    """Where inference keeps its extracts, model copies and shards under a storage root."""
    return storage_root / "inference"


def rows_per_shard(products: Path | str, columns: Sequence[str], target_rows: int, target_bytes: int) -> int:
    """Rows per shard: the row target, or fewer when the columns' uncompressed bytes would pass the byte target.

    Reads the file's footer only, where it is (a local path or an ``s3://`` URI: a ranged read, no download).
    """
    import pyarrow.parquet as pq

    from packwise.storage import filesystem, storage_error

    fs, path = filesystem(products)
    try:
        with fs.open_input_file(path) as source:
            meta = pq.ParquetFile(source).metadata
    except OSError as err:
        raise storage_error(err, products, "storage") from None
    if meta.num_rows == 0:
        return target_rows
    wanted = set(columns)
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema in wanted:
                total += chunk.total_uncompressed_size
    per_row = max(1.0, total / meta.num_rows)
    return max(1, min(target_rows, int(target_bytes // per_row)))


def shard_products(plan: Mapping[str, Any], inference: InferenceConfig) -> list[str]:
    """Cuts the products into shard files of the configured target size, holding only the scored columns.

    Shards live beside the extract in a directory named by their layout, so the same products and
    targets give the same shards (reused, not rewritten). An empty extract gives one empty shard: a
    ParallelFor over nothing would leave its collector nothing to collect. When every product fits one
    shard of a local extract, that shard is a hard link to the extract's file (all its columns; the scorer
    reads the ones it needs by name) instead of a rewrite.

    With an ``s3://`` extract the products file is staged into the task and the shard directory uploaded
    (manifest last); the shard files are then URIs.

    Returns:
        The shard files, in product_id order.
    """
    import pyarrow.parquet as pq

    from packwise.faults import maybe_fail
    from packwise.storage import join, read_bytes, task_storage

    extract_dir = plan["extract_dir"]
    with task_report("shard-products", None), task_storage(extract_dir) as storage:
        maybe_fail("shard-products")
        columns = list(plan["columns"])
        targets = (inference.shard_target_rows, inference.shard_target_bytes)
        per_shard = rows_per_shard(plan["products_path"], columns, *targets)
        layout = hashlib.sha256(json.dumps([columns, per_shard]).encode()).hexdigest()[:16]
        final_uri = join(extract_dir, f"shards-{layout}")
        stored = read_bytes(join(final_uri, MANIFEST_FILE))
        if stored is not None:
            reused = json.loads(stored.decode())["shards"]
            progress.advance(len(reused), len(reused), "shards")
            return [join(final_uri, name) for name in reused]
        # only now the products themselves: a re-run (this task is never cached) that finds its shards
        # downloads nothing
        products_path = storage.stage_in(plan["products_path"])
        final = storage.local(final_uri)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-shards-", dir=final.parent))
        try:
            source = pq.ParquetFile(products_path, pre_buffer=False)
            one_shard = source.metadata.num_rows <= per_shard
            if not storage.remote and one_shard and _link(products_path, tmp / SHARD_FILE_0):
                # one shard: the extract itself (a hard link, no rewrite; the scorer reads its columns by name)
                names = [SHARD_FILE_0]
                progress.advance(1, 1, "shards")
            else:
                names = _write_shards(source, columns, per_shard, min(per_shard, inference.batch_rows), tmp)
            manifest = {"rows_per_shard": per_shard, "columns": columns, "shards": names}
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            publish_directory(tmp, final, MANIFEST_FILE)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        storage.stage_out(final, MANIFEST_FILE)
        return [join(final_uri, name) for name in names]


def _write_shards(source: Any, columns: Sequence[str], per_shard: int, batch_size: int, out: Path) -> list[str]:
    """Writes ``source``'s ``columns`` into ``out`` as shard files of ``per_shard`` rows (at least one, empty
    when the source is); returns their names in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([source.schema_arrow.field(c) for c in columns])
    names: list[str] = []
    writer: pq.ParquetWriter | None = None
    in_shard = 0

    def next_writer() -> pq.ParquetWriter:
        name = f"{SHARD_PREFIX}{len(names):05d}.parquet"
        names.append(name)
        return pq.ParquetWriter(out / name, schema, compression="zstd", compression_level=1)

    expected = max(1, -(-source.metadata.num_rows // per_shard))
    for batch in source.iter_batches(batch_size=batch_size, columns=columns, use_threads=False):
        offset = 0
        while offset < batch.num_rows:
            if writer is None or in_shard >= per_shard:
                if writer is not None:
                    writer.close()
                writer, in_shard = next_writer(), 0
            progress.advance(len(names) - 1, expected, "shards")
            take = min(per_shard - in_shard, batch.num_rows - offset)
            writer.write_batch(batch.slice(offset, take))
            in_shard += take
            offset += take
    if writer is None:
        writer = next_writer()
    writer.close()
    progress.advance(len(names), len(names), "shards")
    return names


SHARD_FILE_0 = f"{SHARD_PREFIX}00000.parquet"


def _link(source: Path, dest: Path) -> bool:
    """Hard-links `dest` to `source`; False where the file system refuses (the caller then copies)."""
    try:
        os.link(source, dest)
    except OSError:
        return False
    return True


def shard_name(shard_path: str | Path) -> str:
    return Path(shard_path).stem


def load_scoring_models(plan: Mapping[str, Any]) -> list[Any]:
    """The plan's models, loaded, in package type order."""
    from packwise.artifact import load_model_artifact
    from packwise.scoring import ScoringModel

    out = []
    for package_type in plan["package_types"]:
        entry = plan["models"][package_type]
        loaded = load_model_artifact(Path(entry["path"]))
        out.append(
            ScoringModel(
                package_type=package_type,
                version=int(entry["version"]),
                booster=loaded.booster,
                spec=loaded.spec,
                threshold=float(entry["threshold"]),
            )
        )
    return out

