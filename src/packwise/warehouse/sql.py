"""SQL that PostgreSQL and Redshift both run: literal rendering and the exactly-once swap of a staged run.

Redshift's `batch_execute_statement` (one transaction) and `UNLOAD ('...')` take no bind parameters, so
values are rendered as SQL literals here, from Python values only (never from text a user typed).
The swap statements avoid what the two dialects disagree on (no `ON CONFLICT`: the watermark row is
deleted and inserted in the same transaction), so the tests run them for real on PostgreSQL.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

import pandas as pd

from packwise.errors import WarehouseError

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def literal(value: Any) -> str:
    """One Python value as a SQL literal both dialects read the same way."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            raise WarehouseError("an infinite number cannot be written to the warehouse")
        return repr(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.replace(tzinfo=None).isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    text = str(value)
    if "\x00" in text:
        raise WarehouseError("a text value holds a NUL character, which the warehouse cannot store")
    return "'" + text.replace("'", "''") + "'"


def render(sql: str, params: Mapping[str, Any] | None) -> str:
    """`sql` with every `$name` replaced by the literal of `params[name]`."""
    given = params or {}

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in given:
            raise WarehouseError(f"the statement names ${name} but no value was given for it")
        return literal(given[name])

    return _PARAM.sub(swap, sql)


@dataclass(frozen=True)
class StagedRun:
    """A run whose scored rows sit in `stage` (product_id, recommended_type, prob_<type>...)."""

    stage: str
    run_id: str
    mode: str
    package_types: Sequence[str]
    versions: Mapping[str, int]
    n_products: int
    since: datetime | None
    watermark: datetime | None
    watermark_after: datetime | None
    recommended: Mapping[str, int]
    unseen: Mapping[str, int]
    loaded_at: datetime


class SwapCounts(NamedTuple):
    """What a load's swap changed: current rows of earlier runs it superseded, history rows it pruned (None
    where the backend does not count them)."""

    superseded: int
    pruned: int | None


def ledger_values(run: StagedRun) -> dict[str, Any]:
    """The run's ledger row (``prediction_runs``) as statement parameters (``$run_id, $mode, $n, ...``)."""
    return {
        "run_id": run.run_id,
        "mode": run.mode,
        "n": run.n_products,
        "since": run.since,
        "watermark": run.watermark if run.n_products > 0 else None,
        "models": json.dumps(dict(run.versions), sort_keys=True),
        "recommended": json.dumps(dict(run.recommended), sort_keys=True),
        "unseen": json.dumps(dict(run.unseen), sort_keys=True),
        "now": run.loaded_at,
    }


def stage_columns(package_types: Sequence[str]) -> list[tuple[str, str]]:
    """The staging table of a run: the scored shard columns, in order."""
    from packwise.scoring import PRODUCT_ID, RECOMMENDED, prob_column

    return [(PRODUCT_ID, "VARCHAR"), (RECOMMENDED, "VARCHAR")] + [
        (prob_column(t), "DOUBLE PRECISION") for t in package_types
    ]


def create_stage(stage: str, package_types: Sequence[str]) -> list[str]:
    """Drops a leftover stage of the same run and creates it empty."""
    cols = ", ".join(f"{n} {t}" for n, t in stage_columns(package_types))
    return [f"DROP TABLE IF EXISTS {stage}", f"CREATE TABLE {stage} ({cols})"]


def superseded_by(stage: str) -> str:
    """The condition selecting the current predictions that a run staged in `stage` supersedes."""
    return f"is_current AND product_id IN (SELECT product_id FROM {stage})"


def swap_statements(run: StagedRun) -> list[str]:
    """Supersede, insert, watermark, ledger and stage drop: run them as ONE transaction.

    The ledger row is written by the same transaction, so a run is either wholly loaded (and a rerun
    finds it in the ledger) or not at all.
    """
    from packwise.prediction_ledger import PIPELINE, PREDICTION_RUNS, PREDICTIONS, WATERMARKS, model_version_column
    from packwise.scoring import PRODUCT_ID, RECOMMENDED, prob_column

    out: list[str] = []
    if run.n_products > 0:
        probs = [prob_column(t) for t in run.package_types]
        versions = [model_version_column(t) for t in run.package_types]
        target = ", ".join([PRODUCT_ID, "run_id", "mode", RECOMMENDED, *probs, *versions, "is_current"])
        values = ", ".join(
            [PRODUCT_ID, literal(run.run_id), literal(run.mode), RECOMMENDED, *probs]
            + [f"CAST({int(run.versions[t])} AS INTEGER)" for t in run.package_types]
            + ["TRUE"]
        )
        out += [
            f"UPDATE {PREDICTIONS} SET is_current = FALSE WHERE {superseded_by(run.stage)}",
            f"INSERT INTO {PREDICTIONS} ({target}) SELECT {values} FROM {run.stage}",
        ]
        if run.watermark_after is not None:
            key = {"pipeline": PIPELINE, "mode": run.mode}
            out += [
                render(f"DELETE FROM {WATERMARKS} WHERE pipeline = $pipeline AND mode = $mode", key),
                render(
                    f"INSERT INTO {WATERMARKS} (pipeline, mode, watermark, run_id, updated_at) "
                    "VALUES ($pipeline, $mode, $watermark, $run_id, $now)",
                    {**key, "watermark": run.watermark_after, "run_id": run.run_id, "now": run.loaded_at},
                ),
            ]
    out.append(
        render(
            f"INSERT INTO {PREDICTION_RUNS} (run_id, mode, n_products, since, watermark, models, recommended, "
            "unseen, loaded_at) VALUES ($run_id, $mode, $n, $since, $watermark, $models, $recommended, $unseen, $now)",
            ledger_values(run),
        )
    )
    if run.n_products > 0:
        out.append(f"DROP TABLE {run.stage}")
    return out
