"""Split files for tests: synthetic products and labels written as a snapshot and split, or a seeded
config's warehouse extracted and split (the steps the pipeline runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from packwise.config import PackwiseConfig
from packwise.synthetic import SeedSpec


def synthetic_splits(folder: Path, spec: SeedSpec, train_ratio: float = 0.8) -> tuple[Path, Path, pd.DataFrame]:
    """Generates `spec`'s products and labels as a snapshot in `folder` (each product's latest label per
    package type) and splits it; returns the training and validation files and the products."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from packwise.split import split_snapshot
    from packwise.synthetic import generate_labels, generate_products

    products = generate_products(spec.n_products, spec.seed, weeks=spec.weeks)
    labels = generate_labels(spec, products)
    latest = labels.sort_values(["week", "observed_at"]).drop_duplicates(["product_id", "package_type"], keep="last")
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), folder / "products.parquet")
    pq.write_table(
        pa.Table.from_pandas(latest[["product_id", "package_type", "label"]], preserve_index=False),
        folder / "labels.parquet",
    )
    train, val = folder / "train.parquet", folder / "val.parquet"
    split_snapshot(folder, train, val, train_ratio, 1, list(spec.package_types))
    return train, val, products


def extracted_splits(cfg: PackwiseConfig, run_id: str) -> dict[str, Any]:
    """Week 1 of `cfg`'s warehouse extracted and split as the pipeline does: ``train``, ``validation``
    (files) and the snapshot's ``fingerprint``."""
    from packwise.training import extract, split

    record = extract(cfg.warehouse, cfg.storage.root, 1, run_id)
    out = cfg.storage.root / "splits"
    train, validation = out / "train.parquet", out / "validation.parquet"
    split(Path(record["snapshot_dir"]), train, validation, cfg.split, cfg.package_type_names)
    return {"train": train, "validation": validation, "fingerprint": record["fingerprint"]}
