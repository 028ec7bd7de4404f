"""A starter configuration for a user's own tables (`packwise init --table T --label-table L`).

`inspect_tables` looks at a products table and a labels table through the warehouse protocol (DuckDB,
Postgres or Redshift) and decides, from the column types and a sample of the values:

- the product id: the column both tables share that is unique in the products table;
- the features: numeric columns, 0/1 and boolean columns, low-cardinality strings (categorical), long
  free-form strings (text, for the text model types); other columns are left out, with the reason;
- the labels: a package type column (strings) and a 0/1 label column, one row per product and type, and
  a week column when there is one (else every label counts from week 1);
- the package types: the distinct values of the type column, least often suitable first (the list order
  is the protection order; the last type is the fallback recommendation);
- the daily watermark: a timestamp column saying when a product was added, if the table has one.

`starter_yaml` writes that as a commented YAML configuration whose queries read the user's tables (the
product id becomes `product_id`, the label columns `package_type` and `label`), so training and monthly
inference run on it without an edit. Every problem is a one-line ConfigError naming the table or column.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from packwise.config.ml import PACKAGE_TYPE_NAME
from packwise.errors import ConfigError
from packwise.warehouse import QueryError

if TYPE_CHECKING:
    from packwise.warehouse import Warehouse

SAMPLE_ROWS = 10_000
MAX_CATEGORICAL_VALUES = 200
MIN_TEXT_LENGTH = 15.0
MAX_PACKAGE_TYPES = 32
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID_NAMES = ("product_id", "id", "sku", "item_id")


def quote(name: str) -> str:
    """A column or table name as SQL: lower-case plain names as they are, anything else double-quoted."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


@dataclass
class Feature:
    column: str
    kind: str  # numeric, boolean, categorical, text, or skipped
    why: str


@dataclass
class Inspection:
    """What `inspect_tables` found; `starter_yaml` writes it out."""

    table: str
    label_table: str
    id_column: str
    type_column: str
    label_column: str
    week_column: str | None
    added_column: str | None
    n_products: int
    n_labels: int
    package_types: list[tuple[str, float, int]]  # (name, positive rate, labels), least often suitable first
    features: list[Feature] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[str]:
        return [f.column for f in self.features if f.kind == kind]


def _tables(warehouse: Warehouse) -> list[str]:
    try:
        found = warehouse.fetch_df(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
        )
    except QueryError:
        return []
    return [str(t) for t in found["table_name"]]


def _check_table(warehouse: Warehouse, name: str, what: str) -> None:
    if not _PLAIN.match(name):
        raise ConfigError(f"{what} {name!r} is not a plain table name (letters, digits and _)")
    if warehouse.table_exists(name):
        return
    tables = [t for t in _tables(warehouse) if t != name]
    close = difflib.get_close_matches(name, tables, n=1)
    listing = f"; tables there: {', '.join(tables)}" if tables else "; the warehouse has no tables"
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{what} {name!r} not found in the warehouse{listing}{hint}")


def _sample(warehouse: Warehouse, table: str) -> pd.DataFrame:
    return warehouse.fetch_df(f"SELECT * FROM {quote(table)} LIMIT {SAMPLE_ROWS}")


def _column(columns: list[str], name: str | None, table: str, option: str) -> str | None:
    """`name` if the table has it (a ConfigError naming the columns if not); None when not given."""
    if name is None:
        return None
    if name in columns:
        return name
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{option} {name!r}: table {table!r} has no such column; its columns: {', '.join(columns)}{hint}")


def _is_01(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values):
        return True
    if not pd.api.types.is_numeric_dtype(values):
        return False
    distinct = set(values.dropna().unique().tolist())
    return bool(distinct) and distinct <= {0, 1}


def _classify(name: str, values: pd.Series) -> Feature:
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values):
        return Feature(name, "boolean", "boolean")
    if pd.api.types.is_datetime64_any_dtype(values):
        return Feature(name, "skipped", "timestamp (not a feature)")
    if pd.api.types.is_numeric_dtype(values):
        if _is_01(values):
            return Feature(name, "boolean", "only 0 and 1")
        return Feature(name, "numeric", str(values.dtype))
    if present.empty:
        return Feature(name, "skipped", "empty in the sample")
    if not all(isinstance(v, str) for v in present.head(1000)):
        return Feature(name, "skipped", f"type {type(present.iloc[0]).__name__} is not numeric, boolean or text")
    distinct = present.nunique()
    if distinct <= MAX_CATEGORICAL_VALUES and distinct <= 0.5 * len(present):
        return Feature(name, "categorical", f"{distinct} distinct values")
    mean_length = float(present.str.len().mean())
    if mean_length >= MIN_TEXT_LENGTH:
        return Feature(name, "text", f"free text, {mean_length:.0f} characters on average")
    return Feature(name, "skipped", f"{distinct} distinct short strings (an identifier?)")


def _pick_id(products: pd.DataFrame, labels: pd.DataFrame, given: str | None, table: str, label_table: str) -> str:
    if given is not None:
        _column(list(products.columns), given, table, "--id-column")
        _column(list(labels.columns), given, label_table, "--id-column")
        return given
    shared = [c for c in products.columns if c in labels.columns]
    ranked = sorted(
        shared,
        key=lambda c: (
            c.lower() not in _ID_NAMES,
            _ID_NAMES.index(c.lower()) if c.lower() in _ID_NAMES else 0,
            not c.lower().endswith("id"),
        ),
    )
    for name in ranked:
        if products[name].notna().all() and products[name].is_unique:
            return str(name)
    raise ConfigError(
        f"no column of {table!r} that is unique per product also appears in {label_table!r} "
        f"(shared columns: {', '.join(shared) or 'none'}); pass --id-column NAME"
    )


def inspect_tables(
    warehouse: Warehouse,
    table: str,
    label_table: str,
    *,
    id_column: str | None = None,
    type_column: str | None = None,
    label_column: str | None = None,
    week_column: str | None = None,
    added_column: str | None = None,
) -> Inspection:
    """Looks at a products table and a labels table and decides every part of a starter config.

    Raises:
        ConfigError: A table or a named column is missing, or no column fits a role (the message names
            the option that settles it).
    """
    _check_table(warehouse, table, "--table")
    _check_table(warehouse, label_table, "--label-table")
    products = _sample(warehouse, table)
    labels = _sample(warehouse, label_table)
    if products.empty:
        raise ConfigError(f"--table {table!r} is empty; load your products into it first")
    if labels.empty:
        raise ConfigError(f"--label-table {label_table!r} is empty; load your labels into it first")
    pid = _pick_id(products, labels, id_column, table, label_table)
    label_cols = [c for c in labels.columns if c != pid]

    week = _column(label_cols, week_column, label_table, "--week-column")
    if week is None and "week" in label_cols and pd.api.types.is_integer_dtype(labels["week"]):
        week = "week"
    ptype = _column(label_cols, type_column, label_table, "--type-column")
    if ptype is None:
        strings = [c for c in label_cols if c != week and labels[c].dropna().map(type).eq(str).all()]
        ptype = "package_type" if "package_type" in strings else (strings[0] if len(strings) == 1 else None)
    if ptype is None:
        raise ConfigError(
            f"--label-table {label_table!r}: no single text column names the package type (columns: "
            f"{', '.join(label_cols)}); pass --type-column NAME"
        )
    label = _column(label_cols, label_column, label_table, "--label-column")
    if label is None:
        flags = [c for c in label_cols if c not in {week, ptype} and _is_01(labels[c])]
        label = "label" if "label" in flags else (flags[0] if len(flags) == 1 else None)
    if label is None:
        raise ConfigError(
            f"--label-table {label_table!r}: no single 0/1 column says whether the type suits the product "
            f"(columns: {', '.join(label_cols)}); pass --label-column NAME (one row per product and package type)"
        )
    if not _is_01(labels[label]):
        raise ConfigError(f"--label-column {label!r} holds values other than 0 and 1; a label is 1 when the type suits")

    types = warehouse.fetch_df(
        f"SELECT {quote(ptype)} AS t, AVG(CAST({quote(label)} AS DOUBLE PRECISION)) AS rate, COUNT(*) AS n "
        f"FROM {quote(label_table)} GROUP BY {quote(ptype)} ORDER BY rate, t"
    )
    if len(types) > MAX_PACKAGE_TYPES:
        raise ConfigError(
            f"{label_table}.{ptype} has {len(types)} distinct values, more than {MAX_PACKAGE_TYPES} package types; "
            "is it the package type column? pass --type-column NAME"
        )
    bad = [str(t) for t in types["t"] if not PACKAGE_TYPE_NAME.match(str(t))]
    if bad:
        raise ConfigError(
            f"{label_table}.{ptype}: package type {bad[0]!r} is not lower_snake_case; rename the values "
            "(e.g. 'Small box' to 'small_box') and run init again"
        )
    added = _column(list(products.columns), added_column, table, "--added-column")
    if added is None:
        stamps = [c for c in products.columns if pd.api.types.is_datetime64_any_dtype(products[c])]
        added = "added_at" if "added_at" in stamps else (stamps[0] if len(stamps) == 1 else None)

    counts = warehouse.fetch_df(
        f"SELECT (SELECT COUNT(*) FROM {quote(table)}) AS n_products, "
        f"(SELECT COUNT(*) FROM {quote(label_table)}) AS n_labels"
    )
    found = Inspection(
        table=table,
        label_table=label_table,
        id_column=pid,
        type_column=ptype,
        label_column=label,
        week_column=week,
        added_column=added,
        n_products=int(counts["n_products"].iloc[0]),
        n_labels=int(counts["n_labels"].iloc[0]),
        package_types=[
            (str(t), float(r), int(n)) for t, r, n in zip(types["t"], types["rate"], types["n"], strict=True)
        ],
    )
    for name in products.columns:
        if name == pid:
            continue
        if name == added:
            found.features.append(Feature(name, "skipped", "when the product was added: the daily watermark"))
            continue
        found.features.append(_classify(str(name), products[name]))
    if not any(f.kind in {"numeric", "boolean", "categorical"} for f in found.features):
        raise ConfigError(
            f"--table {table!r} has no numeric, boolean or categorical column besides {pid!r}; "
            "Packwise needs at least one product attribute to learn from"
        )
    return found


def _block(sql: str, indent: int) -> str:
    pad = " " * indent
    return "|-\n" + "\n".join(pad + line for line in sql.splitlines())


def _flow(items: list[str]) -> str:
    import json

    return "[" + ", ".join(json.dumps(i) if not _PLAIN.match(i) else i for i in items) + "]"


def starter_yaml(
    found: Inspection, warehouse_section: dict[str, Any], command: str, storage_section: dict[str, Any] | None = None
) -> str:
    """The commented YAML configuration for what `inspect_tables` found.

    `warehouse_section` (and `storage_section`, when given) are the settings init ran with, as the user wrote
    them; the queries are added to the warehouse section.
    """
    import yaml

    p, lab = quote(found.table), quote(found.label_table)
    pid = quote(found.id_column)
    used = [f.column for f in found.features if f.kind != "skipped"]
    if found.added_column:
        used.append(found.added_column)
    select = ",\n       ".join([f"CAST(p.{pid} AS VARCHAR) AS product_id", *(f"p.{quote(c)}" for c in used)])
    in_week = f" WHERE {quote(found.week_column)} <= $week" if found.week_column else ""
    products_sql = f"SELECT {select}\nFROM {p} AS p\nWHERE p.{pid} IN (SELECT {pid} FROM {lab}{in_week})"
    label_cols = (
        f"CAST(l.{pid} AS VARCHAR) AS product_id, l.{quote(found.type_column)} AS package_type, "
        f"CAST(l.{quote(found.label_column)} AS INTEGER) AS label"
    )
    if found.week_column:
        week = quote(found.week_column)
        labels_sql = (
            "SELECT product_id, package_type, label FROM (\n"
            f"  SELECT {label_cols},\n"
            f"         row_number() OVER (PARTITION BY l.{pid}, l.{quote(found.type_column)} ORDER BY l.{week} DESC)"
            " AS packwise_rank\n"
            f"  FROM {lab} AS l WHERE l.{week} <= $week\n"
            ") AS latest WHERE packwise_rank = 1"
        )
        weeks_sql = f"SELECT l.{week} AS week FROM {lab} AS l"
    else:
        labels_sql = f"SELECT {label_cols}\nFROM {lab} AS l"
        weeks_sql = f"SELECT 1 AS week FROM {lab}"
    inventory_sql = f"SELECT {select}\nFROM {p} AS p"
    since_col = found.added_column or "added_at"
    new_sql = f"SELECT {select}\nFROM {p} AS p\nWHERE p.{quote(since_col)} > $since"

    lines = [
        f"# Packwise configuration written by `{command}`.",
        '# Every choice is commented; edit freely (README, "Bring your own data"; the configuration reference).',
    ]
    if storage_section:
        lines += yaml.safe_dump({"storage": storage_section}, sort_keys=False, width=1_000).rstrip().splitlines()
    wh = yaml.safe_dump({"warehouse": warehouse_section}, sort_keys=False, width=1_000).rstrip().splitlines()
    lines += wh if warehouse_section else ["warehouse:"]
    lines += [
        f"  # products: {found.table} ({found.n_products:,} rows); {found.id_column!r} is the product id (unique in "
        f"{found.table}, the key of {found.label_table}), renamed product_id",
        f"  products_query: {_block(products_sql, 4)}",
        f"  # labels: {found.label_table} ({found.n_labels:,} rows), one per product and package type: "
        f"{found.type_column!r} names the type, {found.label_column!r} is 1 when it suits the product"
        + (f", the latest {found.week_column!r} up to the training week wins" if found.week_column else ""),
        f"  labels_query: {_block(labels_sql, 4)}",
        (
            f"  # train --week N is checked against {found.label_table}.{found.week_column}"
            if found.week_column
            else f"  # {found.label_table} has no week column: every label is week 1 (train --week 1)"
        ),
        f"  label_weeks_query: {_block(weeks_sql, 4)}",
        "features:",
    ]
    for kind, what in (
        ("numeric", "numeric columns, used as they are"),
        ("boolean", "0/1 and boolean columns"),
        ("categorical", f"string columns with at most {MAX_CATEGORICAL_VALUES} distinct values, one-hot encoded"),
    ):
        cols = [f for f in found.features if f.kind == kind]
        lines.append(
            f"  # {kind}: {what}"
            + (f" ({'; '.join(f'{f.column}: {f.why}' for f in cols)})" if cols and kind != "numeric" else "")
        )
        lines.append(f"  {kind}: {_flow([f.column for f in cols])}")
    lines += [
        "  # derived: the synthetic catalogue's volume and density need length_cm, width_cm, height_cm, weight_kg",
        "  derived: []",
    ]
    texts = found.of_kind("text")
    if texts:
        lines += [
            f"  # text: {texts[0]!r} is free text, read only by model.type xgboost_text or stacked_text"
            + (f" (also free text: {', '.join(texts[1:])})" if texts[1:] else ""),
            f"  text: {texts[0]}",
        ]
    skipped = [f for f in found.features if f.kind == "skipped"]
    for f in skipped:
        lines.append(f"  # not a feature: {f.column} ({f.why})")
    lines += [
        f"# package types: the values of {found.label_table}.{found.type_column}, least often suitable first (the "
        "order is the protection order, least protective first; the last is the fallback recommendation). "
        "Reorder them if that is not your order.",
        "package_types:",
    ]
    for name, rate, n in found.package_types:
        lines += [f"  - name: {name}  # {n:,} labels, {rate:.1%} positive", "    threshold: 0.5"]
    lines += [
        "inference:",
        f"  # monthly: every product of {found.table}",
        f"  inventory_query: {_block(inventory_sql, 4)}",
    ]
    if found.added_column:
        lines += [
            f"  # daily: the products whose {found.added_column!r} is after the last run's (the watermark)",
            f"  new_products_query: {_block(new_sql, 4)}",
            f"  watermark_column: {found.added_column}",
        ]
    else:
        lines += [
            f"  # daily: {found.table} has no timestamp column saying when a product was added; daily inference "
            f"needs one: add added_at to {found.table} (monthly inference needs none)",
            f"  new_products_query: {_block(new_sql, 4)}",
            "  watermark_column: added_at",
        ]
    return "\n".join(lines) + "\n"
