"""Warehouse benchmark: extract and load on DuckDB and PostgreSQL, side by side (compare ratios, not seconds).

For N products (default 1M):

1. extract: `copy_query_to_parquet` of the inventory query (every product, ordered by product_id) into
   one Parquet file, as the inference extract does (``fast=True``: LZ4, dictionaries for text only), at
   N and at ``--scale`` x N products (memory flat: the peak RSS of both is printed). The products are
   stored in id order (no sort needed); on DuckDB the same N products stored shuffled are extracted too
   (DuckDB sorts them), beside it.
2. load: `load_predictions` of a monthly run of N scored rows (4 package types, 8 shard files) after
   ``--history`` earlier monthly runs of the same N products (default 12, ``keep_runs``: the steady state,
   where the load supersedes N current rows and prunes the oldest run's N superseded rows), with
   ``keep_runs=12``; the seconds of each load phase (inserting/staging, checking, superseding, recording,
   pruning, committing, closing) are printed beside the total. Backend ``postgres-plain`` is PostgreSQL
   with the predictions table an earlier release created (one table, not `packwise.prediction_tables`'
   current table and history), for the ratio.
3. retention: 13 monthly loads of ``--retention-products`` products with ``keep_runs=12``; prints how many
   runs the predictions tables hold afterwards (the target: at most 12).

Each phase runs in a fresh process; rows/s and its peak RSS (VmHWM, `peak_rss.py`) are printed per backend.
The tables (and the previous run) are filled by a setup process that is not timed.

PostgreSQL: the DSN in $PACKWISE_BENCH_PG_DSN, else a throwaway cluster started by scripts/ci-postgres.sh
(and stopped afterwards) with the server's own durability (fsync and full-page writes on, unlike the
tests' cluster). After the setup's loads the database is vacuumed and analyzed, so the timed phases do
not share the cores with autovacuum.

Usage: python bench/bench_warehouse.py [--products 1000000] [--scale 5] [--retention-products 20000]
       [--history 12] [--workdir /tmp/packwise-bench-warehouse] [--backends duckdb,postgres,postgres-plain]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from peak_rss import peak_rss_mib  # bench/, beside this script

from packwise.config import WarehouseConfig
from packwise.scoring import output_schema
from packwise.warehouse import PRODUCTS, open_warehouse

TYPES = ["own_container", "bag", "mailer", "box"]
SHARDS = 8
DSN_ENV = "PACKWISE_BENCH_PG_DSN"
REPO = Path(__file__).resolve().parents[1]


UNBOUNDED_ENV = "PACKWISE_BENCH_UNBOUNDED"  # set: the DuckDB extract without warehouse.duckdb_memory


def _config(backend: str, workdir: Path) -> WarehouseConfig:
    if backend == "duckdb":
        if os.environ.get(UNBOUNDED_ENV):
            return WarehouseConfig(path=workdir / "warehouse.duckdb", duckdb_memory=None)
        return WarehouseConfig(path=workdir / "warehouse.duckdb")
    return WarehouseConfig(backend="postgres", dsn_env=DSN_ENV)  # postgres or postgres-plain


BACKENDS = ("duckdb", "postgres", "postgres-plain")


def _products(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {
        "product_id": pa.array([f"P{i:09d}" for i in range(n)]),
        "title": pa.array(rng.choice(["Mug", "Lamp", "Shoe box", "Phone case", "Book"], n)),
        "category": pa.array(rng.choice(["kitchen", "home", "fashion", "electronics", "books"], n)),
        "material": pa.array(rng.choice(["glass", "plastic", "paper", "metal"], n)),
    }
    for name in ("length_cm", "width_cm", "height_cm", "weight_kg", "fragility", "price"):
        arrays[name] = pa.array(rng.random(n) * 50)
    arrays["is_liquid"] = pa.array(rng.random(n) < 0.1)
    arrays["has_battery"] = pa.array(rng.random(n) < 0.2)
    arrays["added_at"] = pa.array(
        np.datetime64("2026-01-01") + rng.integers(0, 86_400 * 30, n).astype("timedelta64[s]"), pa.timestamp("us")
    )
    return pa.table({name: arrays[name] for name in PRODUCTS.column_names})


def _scored(workdir: Path, n: int, seed: int = 1) -> list[Path]:
    """`SHARDS` scored files of n products in all, in row groups of a scoring task's batches (it writes one
    row group per batch of `inference.batch_rows`), as the load reads them."""
    from packwise.config import InferenceConfig

    group_rows = InferenceConfig().batch_rows
    rng = np.random.default_rng(seed)
    files = []
    per = -(-n // SHARDS)
    for shard in range(SHARDS):
        lo, hi = shard * per, min(n, (shard + 1) * per)
        ids = [f"P{i:09d}" for i in range(lo, hi)]
        prob = rng.random((hi - lo, len(TYPES))).astype(np.float32)
        rec = rng.integers(0, len(TYPES), hi - lo).astype(np.int32)
        arrays = [pa.array(ids)] + [pa.array(prob[:, j]) for j in range(len(TYPES))]
        arrays.append(pa.DictionaryArray.from_arrays(pa.array(rec), pa.array(TYPES)))
        path = workdir / f"scored-{shard:02d}.parquet"
        pq.write_table(pa.Table.from_arrays(arrays, schema=output_schema(TYPES)), path, row_group_size=group_rows)
        files.append(path)
    return files


KEEP_RUNS = 12


def _load(wh: Any, files: list[Path], run: int, n: int) -> Any:
    from packwise.predictions import load_predictions

    return load_predictions(
        wh, files, run_id=f"bench-{run}", mode="monthly", package_types=TYPES, versions=dict.fromkeys(TYPES, run),
        expected_rows=n, since=None, watermark=datetime(2026, 1, 1) + timedelta(days=31 * run),
        recommended={"box": n}, unseen={}, keep_runs=KEEP_RUNS,
    )  # fmt: skip


def _drop_all(wh: Any) -> None:
    kinds = wh.fetch_df(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    if "VIEW" in set(kinds.loc[kinds["table_name"] == "predictions", "table_type"]):  # PostgreSQL's layout
        wh.execute("DROP VIEW predictions")
        wh.execute("DROP TABLE predictions_history CASCADE")  # and the history tables inheriting it
    tables = ("predictions", "predictions_current", "prediction_history_tables", "prediction_runs", "run_watermarks")
    for table in (*tables, "products", "labels"):
        wh.execute(f"DROP TABLE IF EXISTS {table}")


def _runs_held(wh: Any) -> int:
    """Distinct run ids with a row in predictions (current or history: on PostgreSQL a view of both)."""
    return len(wh.fetch_df("SELECT DISTINCT run_id FROM predictions"))


def _plain_table(wh: Any, backend: str) -> None:
    """postgres-plain: the predictions table as an earlier release created it (one table)."""
    if backend == "postgres-plain":
        from packwise.prediction_ledger import predictions_columns

        columns = ", ".join(f"{c} {t}" for c, t in predictions_columns(TYPES))
        wh.execute(f"CREATE TABLE predictions ({columns})")


def _settle(dsn: str) -> None:
    """VACUUM ANALYZE after the setup's loads, so the timed load does not share the two cores with autovacuum
    working through them (nor wait, at its DROP of the oldest history table, for the deadlock timeout that
    cancels an autovacuum holding it: 1 s, seen in a run). A month after its previous load, a production
    load does not meet them either."""
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(dsn, autocommit=True) as con, con.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


def phase(name: str, backend: str, workdir: Path, n: int, history: int = 1) -> dict[str, Any]:
    """Runs one phase in this process; returns rows, seconds and peak RSS."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = _config(backend, workdir)
    if name in ("setup", "setup-products", "setup-shuffled"):
        with open_warehouse(config) as wh:
            _drop_all(wh)
            wh.ensure_schema()
            products = _products(n)
            if name == "setup-shuffled":  # the same rows stored out of id order: the extract sorts them
                products = products.take(np.random.default_rng(7).permutation(n))
            for start in range(0, n, 250_000):
                wh.append("products", products.slice(start, 250_000))
            del products
            if name != "setup":
                return {"rows": n}
            _scored(workdir, n)  # the timed run's files, rewritten: an earlier setup's may hold another N
            previous = workdir / "previous"
            previous.mkdir(exist_ok=True)
            _plain_table(wh, backend)
            earlier = _scored(previous, n, seed=0)
            for run in range(history):  # the history; the last is the current run the timed load supersedes
                _load(wh, earlier, run, n)
        if backend.startswith("postgres"):
            _settle(os.environ[DSN_ENV])
        return {"rows": n}
    if name == "retention":
        with open_warehouse(config) as wh:
            _drop_all(wh)
            _plain_table(wh, backend)
        files = _scored(workdir, n, seed=2)
        loads = []
        for run in range(KEEP_RUNS + 1):
            with open_warehouse(config) as wh:
                start = time.perf_counter()
                _load(wh, files, run, n)
                loads.append(time.perf_counter() - start)
        with open_warehouse(config, read_only=True) as wh:
            held = _runs_held(wh)
        return {"rows": n, "seconds": sum(loads), "runs_held": held, "loads": len(loads), "rss_mib": peak_rss_mib()}
    start = time.perf_counter()
    phases: dict[str, float] = {}
    if name == "extract":
        with open_warehouse(config, read_only=True) as wh:
            rows = wh.copy_query_to_parquet(
                "SELECT p.* FROM products AS p", None, workdir / f"extract-{backend}.parquet", ["product_id"],
                fast=True,  # as the inference extract writes it
            )
    else:
        from packwise import progress

        marks: list[tuple[str, float]] = [("open", start)]
        progress.phase = lambda step: marks.append((step, time.perf_counter()))  # type: ignore[assignment]
        files = sorted(workdir.glob("scored-*.parquet"))
        with open_warehouse(config) as wh:
            rows = _load(wh, files, history, n).n_products
            marks.append(("closing", time.perf_counter()))
        marks.append(("end", time.perf_counter()))
        for (step, at), (_, until) in itertools.pairwise(marks):
            phases[step] = phases.get(step, 0.0) + until - at
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rss_mib": peak_rss_mib(), "phases": phases}


def _child(name: str, backend: str, workdir: Path, n: int, unbounded: bool = False, history: int = 1) -> dict[str, Any]:
    env = {**os.environ, UNBOUNDED_ENV: "1"} if unbounded else os.environ
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--backend", backend, "--workdir", str(workdir),
         "--products", str(n), "--history", str(history)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/packwise-bench-warehouse"))
    parser.add_argument("--scale", type=int, default=5, help="The second extract: this many times --products.")
    parser.add_argument("--retention-products", type=int, default=20_000)
    parser.add_argument(
        "--phase", choices=["setup", "setup-products", "setup-shuffled", "extract", "load", "retention"]
    )
    parser.add_argument("--history", type=int, default=KEEP_RUNS, help="Monthly runs loaded before the timed one.")
    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument("--backends", default="duckdb,postgres", help="Comma-separated backends to compare.")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if not backends or any(b not in BACKENDS for b in backends) or args.history < 1:
        parser.error(f"--backends {args.backends!r}, --history {args.history}: a comma-separated list of "
                     f"{', '.join(BACKENDS)}; --history 1 or more")  # fmt: skip
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.phase:
        print(json.dumps(phase(args.phase, args.backend, args.workdir, args.products, args.history)))
        return

    cluster_dir = None
    if any(b.startswith("postgres") for b in backends) and not os.environ.get(DSN_ENV):
        script = str(REPO / "scripts/ci-postgres.sh")
        durable = {**os.environ, "PACKWISE_PG_DURABLE": "1"}  # fsync and full-page writes on, as in production
        started = subprocess.run(["bash", script], check=True, capture_output=True, text=True, env=durable)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines())
        os.environ[DSN_ENV] = exports["PACKWISE_TEST_PG_DSN"].strip("'")
        cluster_dir = exports["PACKWISE_TEST_PG_DIR"].strip("'")
    try:
        results: dict[str, dict[str, dict[str, Any]]] = {}
        big = args.products * args.scale
        for backend in backends:
            _child("setup", backend, args.workdir, args.products, history=args.history)
            results[backend] = {
                p: _child(p, backend, args.workdir, args.products, history=args.history) for p in ("extract", "load")
            }
            results[backend]["retention"] = _child("retention", backend, args.workdir / "retention",
                                                   args.retention_products)  # fmt: skip
            if backend == "duckdb":  # the same extract without its memory bound, and of the rows shuffled
                results[backend]["extract-unbounded"] = _child("extract", backend, args.workdir, args.products, True)
                _child("setup-shuffled", backend, args.workdir / "shuffled", args.products)
                results[backend]["extract-shuffled"] = _child("extract", backend, args.workdir / "shuffled",
                                                              args.products)  # fmt: skip
            if args.scale > 1:
                _child("setup-products", backend, args.workdir / "big", big)
                results[backend]["extract-big"] = _child("extract", backend, args.workdir / "big", big)
                if backend == "duckdb":
                    results[backend]["extract-big-unbounded"] = _child(
                        "extract", backend, args.workdir / "big", big, True
                    )
    finally:
        if cluster_dir:
            subprocess.run(["bash", str(REPO / "scripts/ci-postgres.sh"), "stop", cluster_dir], check=False)
        shutil.rmtree(args.workdir, ignore_errors=True)

    print(f"{args.products:,} products, the load after {args.history} runs of history; rows/s and peak RSS per "
          f"phase (one process each); load average {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    header = f"{'phase':<12}" + "".join(f" {b + ' rows/s':>16} {b + ' RSS':>14}" for b in backends)
    pair = "duckdb" in backends and "postgres" in backends
    print(header + (f" {'pg/duck':>8}" if pair else ""))
    shown = ["extract", "load"] + (["extract-big"] if args.scale > 1 else [])
    for p in shown:
        line = f"{(p if p != 'extract-big' else f'extract x{args.scale}'):<12}"
        for b in backends:
            r = results[b][p]
            line += f" {r['rows'] / r['seconds']:>16,.0f} {r['rss_mib']:>10.0f} MiB"
        if pair:
            d, g = results["duckdb"][p], results["postgres"][p]
            line += f" {(g['rows'] / g['seconds']) / (d['rows'] / d['seconds']):>8.2f}"
        print(line)
    for b in backends:
        steps = results[b]["load"]["phases"]
        print(f"\n{b} load phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
        if args.scale > 1:
            small, large = results[b]["extract"]["rss_mib"], results[b]["extract-big"]["rss_mib"]
            print(f"{b} extract peak RSS: {small:.0f} MiB at {args.products:,}, {large:.0f} MiB at {big:,} "
                  f"({large / small:.2f}x)")  # fmt: skip
        if b == "duckdb":
            limit = WarehouseConfig().duckdb_memory
            for key, rows in (("extract", args.products), ("extract-big", big)):
                if f"{key}-unbounded" not in results[b]:
                    continue
                bounded, free = results[b][key], results[b][f"{key}-unbounded"]
                print(f"duckdb extract of {rows:,}, duckdb_memory {limit} / unbounded: "
                      f"{bounded['rows'] / bounded['seconds']:,.0f} / {free['rows'] / free['seconds']:,.0f} rows/s "
                      f"({bounded['seconds'] / free['seconds']:.2f}x the time), peak RSS {bounded['rss_mib']:.0f} / "
                      f"{free['rss_mib']:.0f} MiB")  # fmt: skip
        if "extract-shuffled" in results[b]:
            ordered, shuffled = results[b]["extract"], results[b]["extract-shuffled"]
            print(f"{b} extract of {args.products:,} stored in id order (no sort) / stored shuffled (sorted): "
                  f"{ordered['rows'] / ordered['seconds']:,.0f} / {shuffled['rows'] / shuffled['seconds']:,.0f} rows/s "
                  f"({shuffled['seconds'] / ordered['seconds']:.2f}x the time), peak RSS {ordered['rss_mib']:.0f} / "
                  f"{shuffled['rss_mib']:.0f} MiB")  # fmt: skip
        r = results[b]["retention"]
        verdict = "ok" if r["runs_held"] <= KEEP_RUNS else "OVER"
        print(f"{b} retention: after {r['loads']} monthly loads of {r['rows']:,} products with keep_runs={KEEP_RUNS}, "
              f"the predictions tables hold {r['runs_held']} runs ({verdict}); "
              f"{r['seconds'] / r['loads']:.2f} s a load")
    if "postgres" in backends and "postgres-plain" in backends:
        part, plain = results["postgres"]["load"], results["postgres-plain"]["load"]
        print(f"\npostgres load after {args.history} runs of history, current table swapped / one table "
              "(earlier releases): "
              f"{part['rows'] / part['seconds']:,.0f} / {plain['rows'] / plain['seconds']:,.0f} rows/s "
              f"({plain['seconds'] / part['seconds']:.2f}x faster)")  # fmt: skip


if __name__ == "__main__":
    main()
