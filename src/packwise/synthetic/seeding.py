"""Writing the synthetic catalogue and label history into a warehouse."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from packwise.errors import WarehouseError
from packwise.synthetic.catalogue import _PRODUCTS_STREAM, BASE_DATE, _draw_products, _rng, generate_products
from packwise.synthetic.labels import SeedSpec, SeedSummary, generate_labels

if TYPE_CHECKING:
    from packwise.warehouse import Warehouse


def _summary(spec: SeedSpec, products: pd.DataFrame, labels: pd.DataFrame) -> SeedSummary:
    shipments = labels[labels["source"] == "shipment"]
    return SeedSummary(
        n_products=len(products),
        n_labels=len(labels),
        n_feedback_labels=int((labels["source"] == "feedback").sum()),
        weeks=spec.weeks,
        labels_per_type={t: int((labels["package_type"] == t).sum()) for t in spec.package_types},
        positive_rate={
            t: float(shipments.loc[shipments["package_type"] == t, "label"].mean())
            if (shipments["package_type"] == t).any()
            else 0.0
            for t in spec.package_types
        },
    )


def seed_warehouse(
    warehouse: Warehouse, spec: SeedSpec, on_step: Callable[[str, int, int | None], None] | None = None
) -> SeedSummary:
    """Replaces the products and labels tables with the synthetic catalogue of `spec`, atomically.

    Other tables (run_watermarks, predictions) are left as they are.

    Args:
        warehouse: An open, writable warehouse.
        spec: What to generate.
        on_step: Called with (step, done, total) as the work goes: "generating products" with products
            drawn of n_products, then "drawing labels", "writing products" and "writing labels" (total None).

    Returns:
        Counts and positive rates of what was written.
    """
    step = on_step or (lambda name, done, total: None)
    products = generate_products(
        spec.n_products, spec.seed, weeks=spec.weeks, on_progress=lambda done, n: step("generating products", done, n)
    )
    step("drawing labels", 0, None)
    labels = generate_labels(spec, products)
    with warehouse.transaction():
        warehouse.ensure_schema()
        step("writing products", 0, None)
        warehouse.replace_table("products", _products_arrow(products))
        step("writing labels", 0, None)
        warehouse.replace_table("labels", _labels_arrow(labels))
    return _summary(spec, products, labels)


def add_products(warehouse: Warehouse, n: int, seed: int, added_at: datetime) -> int:
    """Appends `n` new, unlabelled products added at `added_at`; ids continue after the largest one.

    Args:
        warehouse: An open, writable warehouse holding a synthetic catalogue.
        n: Number of products to add.
        seed: Seed of the draw (with the first new id, so repeated calls add different products).
        added_at: The `added_at` of every new product.

    Returns:
        The number of products appended.

    Raises:
        WarehouseError: The products table is missing or its ids are not synthetic (`P` + digits).
    """
    if n <= 0:
        return 0
    if not warehouse.table_exists("products"):
        raise WarehouseError("the warehouse has no products table; run `packwise seed` first")
    last = warehouse.fetch_df(
        "SELECT product_id FROM products ORDER BY length(product_id) DESC, product_id DESC LIMIT 1"
    )
    first_index = 1
    if len(last):
        top = str(last["product_id"].iloc[0])
        if not (top.startswith("P") and top[1:].isdigit()):
            raise WarehouseError(
                f"product id {top!r} is not synthetic (P + digits); add products to a `packwise seed` warehouse"
            )
        first_index = int(top[1:]) + 1
    products = _draw_products(_rng(seed, _PRODUCTS_STREAM, first_index), n, first_index)
    products["added_at"] = pd.Series([added_at] * n, dtype="datetime64[us]")
    with warehouse.transaction():
        return warehouse.append("products", _products_arrow(products))


def add_products_after_last_run(warehouse: Warehouse, n: int, seed: int) -> tuple[int, datetime]:
    """Appends `n` products dated one hour after the newest `added_at` and after every inference watermark.

    So the next daily run scores exactly these products (and any added later), and nothing else changes:
    the existing products, the labels, the predictions and the watermarks stay as they are.

    Args:
        warehouse: An open, writable warehouse holding a synthetic catalogue.
        n: Number of products to add (at least 1).
        seed: Seed of the draw (see `add_products`).

    Returns:
        The number of products appended and their `added_at`.

    Raises:
        WarehouseError: No products table, non-synthetic ids, or `n` < 1.
    """
    from packwise.prediction_ledger import read_watermark

    if n < 1:
        raise WarehouseError(f"--add-products {n}: add at least 1 product")
    if not warehouse.table_exists("products"):
        raise WarehouseError("the warehouse has no products table; run `packwise seed` first")
    newest = warehouse.fetch_df("SELECT max(added_at) AS newest FROM products")["newest"].iloc[0]
    stamps = [] if pd.isna(newest) else [pd.Timestamp(newest).to_pydatetime()]
    stamps += [w for mode in ("daily", "monthly") if (w := read_watermark(warehouse, mode)) is not None]
    added_at = ((max(stamps) if stamps else BASE_DATE) + timedelta(hours=1)).replace(microsecond=0)
    return add_products(warehouse, n, seed, added_at), added_at


_PRODUCTS_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("material", pa.string()),
        ("length_cm", pa.float64()),
        ("width_cm", pa.float64()),
        ("height_cm", pa.float64()),
        ("weight_kg", pa.float64()),
        ("fragility", pa.float64()),
        ("price", pa.float64()),
        ("is_liquid", pa.bool_()),
        ("has_battery", pa.bool_()),
        ("added_at", pa.timestamp("us")),
    ]
)
_LABELS_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("package_type", pa.string()),
        ("label", pa.int16()),
        ("week", pa.int32()),
        ("observed_at", pa.timestamp("us")),
        ("source", pa.string()),
    ]
)


def _products_arrow(products: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(products[_PRODUCTS_SCHEMA.names], schema=_PRODUCTS_SCHEMA, preserve_index=False)


def _labels_arrow(labels: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(labels[_LABELS_SCHEMA.names], schema=_LABELS_SCHEMA, preserve_index=False)
