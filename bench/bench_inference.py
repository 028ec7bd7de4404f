"""Inference benchmark: the monthly pipeline beside bare oneDAL and bare XGBoost predict, in one run.

On N products (default 5M; --products) in a DuckDB warehouse and the four default-sized models of
bench_scoring.py (200 rounds, depth 4, one per package type):

1. The monthly pipeline, every task in a fresh process as kfp.local's subprocess runner starts it (the
   same `packwise.inference` step functions the components call, without kfp's own overhead, in the
   environment that runner gives a task: its share of the cores as OMP_NUM_THREADS): extract -> prepare ->
   shard -> score-shard (``inference.local_parallelism`` shards at once, at most kfp.local's two) -> load
   (its first step checks that every product was scored once). Per task: wall time (the process,
   interpreter start included), its share of the pipeline's wall time, peak RSS.
2. Bare XGBoost: `Booster.inplace_predict` of the four models on the same rows' feature matrix, in memory
   (in slices of ``inference.batch_rows`` rows, as a scoring task predicts).
3. Bare oneDAL: `daal4py` predict of the same four models on the same matrix (skipped where it does not
   import).
4. The daily run: 10k new products added after the monthly watermark, the same tasks in daily mode.

--months runs (default 3) of 1 and 3 take turns: each month is a run of its own, right after a bare oneDAL
predict of its own, so each month's ratio is of two measurements seconds apart and the ratios printed are
the median over the months, with their range. Month 1 loads into an empty table; later months supersede
every product's current row, as a monthly run does in production. Bare XGBoost runs before month 1 only;
the per-task table is the last month's.

Rows/s of each are printed side by side; ratios against bare oneDAL are what to compare (noisy machine).
Targets (issue 15): scoring end to end >= 0.85 of bare oneDAL; the whole monthly pipeline within 2x the
bare oneDAL predict time; peak RSS of every task < 1 GiB and flat in N; the daily run under 10 s.

Usage: python bench/bench_inference.py [--products 5000000] [--daily 10000] [--months 3] [--workdir DIR]
       [--engine auto] [--shard-rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peak_rss import peak_rss_mib  # bench/, beside this script

# Only what every task imports at module level: a task's process must not pay for the bench's own imports
# (numpy, pandas and the synthetic catalogue are imported where the parent needs them).
from packwise.config import ComputeConfig, InferenceConfig, WarehouseConfig

BENCH = Path(__file__).resolve().parent
THRESHOLD = 0.5

STEPS = ("extract", "prepare", "shard", "score", "load")
SHARD_ROWS_ENV = "PACKWISE_BENCH_SHARD_ROWS"  # --shard-rows, for the task processes
RUN_ENV = "PACKWISE_BENCH_RUN"  # the month's suffix of the run id, for the task processes
ENGINES_ENV = "PACKWISE_BENCH_ENGINES"  # the engines bare predict measures


def _state(workdir: Path) -> dict[str, Any]:
    path = workdir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(workdir: Path, state: dict[str, Any]) -> None:
    (workdir / "state.json").write_text(json.dumps(state, default=str))


def _models_plan(paths: dict[str, Path]) -> dict[str, Any]:
    """What `resolve_models` returns for version 1 of each model (no registry needed)."""
    from packwise.artifact import load_model_artifact
    from packwise.synthetic import PACKAGE_TYPES

    models = {}
    for t in PACKAGE_TYPES:
        loaded = load_model_artifact(paths[t])
        models[t] = {
            "version": 1, "status": "Approved", "pinned": False, "model_type": loaded.model_type,
            "threshold": THRESHOLD, "path": str(paths[t]), "spec": loaded.spec.to_json(),
        }  # fmt: skip
    return {"package_types": list(PACKAGE_TYPES), "models": models}


def step(name: str, workdir: Path, mode: str, engine: str) -> dict[str, Any]:
    """Runs one pipeline task in this process; returns its result summary."""
    from packwise import inference as steps

    state = _state(workdir)
    warehouse = WarehouseConfig(path=workdir / "warehouse.duckdb")
    shard_rows = os.environ.get(SHARD_ROWS_ENV)
    sizes = {"shard_target_rows": int(shard_rows), "shard_target_bytes": 1 << 32} if shard_rows else {}
    inference = InferenceConfig(engine=engine, **sizes)
    root = workdir / "state"
    run_id = f"bench-{mode}{os.environ.get(RUN_ENV, '')}"  # a month of its own per --months
    key = f"{mode}:"
    out: dict[str, Any] = {}
    started = time.perf_counter()
    if name == "extract":
        record = steps.extract_products(warehouse, inference, root, mode, run_id)
        state[key + "extract"] = record
        state.pop(key + "scored", None)  # an earlier month's shards
        out = {"rows": record["n_products"]}
    elif name == "prepare":
        plan = steps.prepare_products(
            Path(state[key + "extract"]["extract_dir"]), state["models"], mode, inference.batch_rows
        )
        state[key + "plan"] = plan
        out = {"rows": plan.get("n_products", 0)}
    elif name == "shard":
        state[key + "shards"] = steps.shard_products(state[key + "plan"], inference)
        out = {"shards": len(state[key + "shards"])}
    elif name.startswith("score"):
        i = int(name.split(":")[1])
        shard = Path(state[key + "shards"][i])
        dest = workdir / "scored" / mode / f"{shard.stem}.parquet"
        stats = steps.score_shard(shard, state[key + "plan"], ComputeConfig(), None, inference, dest)
        # shards score concurrently: the parent records each one's file in the state (no two writers)
        out = {"rows": stats["rows"], "seconds_predict": stats["seconds_predict"], "seconds_file": stats["seconds"],
               "scored": [str(dest), stats], "ended_at": time.time()}  # fmt: skip
    elif name == "load":
        extract = state[key + "extract"]
        scored = [(Path(p), s) for p, s in state[key + "scored"].values()]
        record = steps.load_predictions(
            state[key + "plan"], scored, warehouse, inference, root, run_id, mode, extract.get("since"),
            extract.get("watermark"),
        )  # fmt: skip
        out = {"rows": record["n_products"]}
    work = time.perf_counter() - started
    if not name.startswith("score"):
        _save(workdir, state)
    return {**out, "work_s": work, "rss_mib": peak_rss_mib()}


def _task_env() -> dict[str, str]:
    """A task's environment as kfp.local's subprocess runner gives it: the caller's, with each of its two
    concurrent tasks' share of the cores as OMP_NUM_THREADS (`packwise_pipelines.local.task_environment`)."""
    from packwise_pipelines.local import task_environment

    return {**os.environ, **task_environment()}


def _child(args: list[str]) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=_task_env()
    )
    wall = time.perf_counter() - start
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, wall


Tasks = list[tuple[str, dict[str, Any], float]]


@dataclass
class Run:
    """One pipeline run: each task's (name, result, process wall), the pipeline's wall and its scoring
    phase's (the first shard's start to the last shard's end)."""

    tasks: Tasks
    wall: float
    score_wall: float


def run_pipeline(workdir: Path, mode: str, engine: str) -> Run:
    """Runs the DAG's tasks as kfp.local does: one after the other, the shards ``inference.local_parallelism``
    at once (kfp.local's cap, 2). Returns every task and the pipeline's wall (the scoring phase counted once,
    from its first shard's start to its last shard's end)."""
    from concurrent.futures import ThreadPoolExecutor

    from packwise_pipelines.local import LOCAL_CONCURRENT_TASKS

    tasks: Tasks = []
    common = ["--workdir", str(workdir), "--mode", mode, "--engine", engine]
    for name in ("extract", "prepare", "shard"):
        result, wall = _child(["--step", name, *common])
        tasks.append((name, result, wall))
    n_shards = tasks[-1][1]["shards"]
    at_once = min(InferenceConfig().local_parallelism, LOCAL_CONCURRENT_TASKS)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        scored = list(pool.map(lambda i: _child(["--step", f"score:{i}", *common]), range(n_shards)))
    score_wall = time.perf_counter() - started
    state = _state(workdir)
    key = f"{mode}:"
    state[key + "scored"] = {str(i): result.pop("scored") for i, (result, _) in enumerate(scored)}
    _save(workdir, state)
    tasks += [(f"score-shard {i}", result, wall) for i, (result, wall) in enumerate(scored)]
    result, wall = _child(["--step", "load", *common])
    tasks.append(("load", result, wall))
    total = sum(w for name, _, w in tasks if not name.startswith("score-shard")) + score_wall
    return Run(tasks, total, score_wall)


def bare(workdir: Path, products: Path) -> dict[str, Any]:
    """Bare XGBoost and bare oneDAL predict of the four models on the same rows, in memory."""
    import numpy as np
    import pyarrow.parquet as pq

    from packwise.artifact import load_model_artifact
    from packwise.engine import onedal_available, predict_proba
    from packwise.features import build_features
    from packwise.synthetic import PACKAGE_TYPES

    loaded = {t: load_model_artifact(Path(p)) for t, p in _state(workdir)["model_paths"].items()}
    spec = loaded[PACKAGE_TYPES[0]].spec
    parts = [
        build_features(b.to_pandas(), spec).dense
        for b in pq.ParquetFile(products).iter_batches(batch_size=131_072, columns=spec.input_columns)
    ]
    matrix = np.ascontiguousarray(np.concatenate(parts))
    del parts
    out: dict[str, Any] = {"rows": int(matrix.shape[0])}
    batch = InferenceConfig().batch_rows
    for m in loaded.values():
        m.booster.set_param({"nthread": os.cpu_count() or 1})
    engines = ["xgboost", "onedal"] if onedal_available() else ["xgboost"]
    wanted = os.environ.get(ENGINES_ENV)
    if wanted:
        engines = [e for e in engines if e in wanted.split(",")]
    for engine in engines:
        for m in loaded.values():  # convert (oneDAL) outside the timing, as a scoring task does once
            predict_proba(m.booster, matrix[:10], engine)
        start = time.perf_counter()
        # in the record batches a scoring task predicts (views of the in-memory matrix, no copies): one
        # call on the whole 1M-row matrix ran 2x slower than the same rows in batches, for both engines
        for lo in range(0, matrix.shape[0], batch):
            for m in loaded.values():
                predict_proba(m.booster, matrix[lo : lo + batch], engine)
        out[engine] = time.perf_counter() - start
    return out


def setup(workdir: Path, n: int) -> Path:
    """Trains the models, writes the products and loads them into a fresh DuckDB warehouse (untimed)."""
    import duckdb

    from packwise.warehouse.duckdb import DuckDBWarehouse

    sys.path.insert(0, str(BENCH))  # the models and products of bench_scoring.py (imported by the parent only)
    from bench_scoring import products_file, train_models

    paths = train_models(workdir)
    products = products_file(workdir, n)
    shutil.rmtree(workdir / "state", ignore_errors=True)
    shutil.rmtree(workdir / "scored", ignore_errors=True)
    (workdir / "warehouse.duckdb").unlink(missing_ok=True)
    with DuckDBWarehouse(workdir / "warehouse.duckdb") as wh:
        wh.ensure_schema()
    con = duckdb.connect(str(workdir / "warehouse.duckdb"))
    con.execute("INSERT INTO products BY NAME SELECT * FROM read_parquet($f)", {"f": str(products)})
    con.close()
    _save(workdir, {"models": _models_plan(paths), "model_paths": {t: str(p) for t, p in paths.items()}})
    return products


def add_daily(workdir: Path, n: int, after_index: int) -> None:
    """`n` new products added a day after everything in the warehouse."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    from packwise.synthetic import generate_products

    frame = generate_products(n, seed=99, first_index=after_index + 1)
    con = duckdb.connect(str(workdir / "warehouse.duckdb"))
    found = con.execute("SELECT max(added_at) FROM products").fetchall()
    latest = found[0][0]
    frame["added_at"] = pd_timestamp(latest) + np.timedelta64(1, "D")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    con.register("daily_new", table)
    con.execute("INSERT INTO products BY NAME SELECT * FROM daily_new")
    con.close()


def pd_timestamp(value: Any) -> Any:
    import pandas as pd

    return pd.Timestamp(value)


def _print(title: str, run: Run, n: int) -> float:
    """One row per task: process wall, share of the pipeline's wall, rows/s, work and overhead, peak RSS.

    work is the step function's own wall (its lazy imports included); overhead is the rest of the process
    wall: interpreter start, module imports, reading and writing the bench's state. Shards scored at once
    overlap, so their shares add up to more than the scoring phase's.
    """
    tasks, total = run.tasks, run.wall
    print(f"\n{title}: {total:.2f} s wall over {len(tasks)} tasks, {n / total:,.0f} rows/s")
    print(
        f"{'task':<16} {'wall s':>7} {'share':>6} {'rows/s':>11} {'work s':>7} {'overhead s':>10} "
        f"{'peak RSS':>9} {'rows':>9}"
    )
    for name, result, wall in tasks:
        rows = result.get("rows")
        rate = f"{rows / wall:,.0f}" if rows else ""
        work = result.get("work_s", 0.0)
        print(
            f"{name:<16} {wall:>7.2f} {wall / total:>6.1%} {rate:>11} {work:>7.2f} {wall - work:>10.2f} "
            f"{result['rss_mib']:>5.0f} MiB {'' if rows is None else rows:>9}"
        )
    busy = sum(w for _, _, w in tasks)
    overhead = sum(w - r.get("work_s", 0.0) for _, r, w in tasks)
    print(f"{'all tasks':<16} {busy:>7.2f} {'':>6} {'':>11} {busy - overhead:>7.2f} {overhead:>10.2f}  "
          "(task seconds; the pipeline's wall counts concurrent shards once)")  # fmt: skip
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=5_000_000)
    parser.add_argument("--daily", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/packwise-bench-inference"))
    parser.add_argument("--engine", choices=["auto", "xgboost", "onedal"], default="auto")
    parser.add_argument("--months", type=int, default=3, help="monthly runs, each after a bare predict of its own")
    parser.add_argument("--step")
    parser.add_argument("--mode", default="monthly")
    parser.add_argument(
        "--shard-rows", type=int, help="inference.shard_target_rows (and no byte cap); default: the configured"
    )
    args = parser.parse_args()
    if args.shard_rows:
        os.environ[SHARD_ROWS_ENV] = str(args.shard_rows)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.step:
        print(json.dumps(step(args.step, args.workdir, args.mode, args.engine)))
        return
    if args.step is None and os.environ.get("BENCH_BARE"):
        print(json.dumps(bare(args.workdir, Path(os.environ["BENCH_BARE"]))))
        return

    products = setup(args.workdir, args.products)
    # Each month is its own run (run id), after a bare predict of its own: the pipeline/bare ratio is of two
    # measurements seconds apart. Month 1 loads into an empty table; the later ones supersede every product,
    # as a monthly run does in production. Bare XGBoost, the reference, is measured before month 1 only.
    months: list[tuple[dict[str, Any], Run]] = []
    for i in range(args.months):
        os.environ[RUN_ENV] = f"-{i + 1}"
        bare_i, _ = _child_bare(args.workdir, products, "" if i == 0 else "onedal")
        months.append((bare_i, run_pipeline(args.workdir, "monthly", args.engine)))
    os.environ[RUN_ENV] = ""
    add_daily(args.workdir, args.daily, args.products)
    daily = run_pipeline(args.workdir, "daily", args.engine)

    def score_seconds(run: Run, key: str | None) -> float:
        """The scoring phase's wall: of the tasks' processes (key None), or of their score_file calls
        (seconds_file: the first call's start to the last call's end, concurrent shards overlapping), or
        the shards' summed seconds of `key`."""
        scored = [r for name, r, _ in run.tasks if name.startswith("score-shard")]
        if key is None:
            return run.score_wall
        if key == "seconds_file":
            return max(r["ended_at"] for r in scored) - min(r["ended_at"] - r[key] for r in scored)
        return sum(r.get(key, 0.0) for r in scored)

    n = args.products
    bare_last, monthly = months[-1]
    bare_result = {**months[0][0], **bare_last}  # bare XGBoost from month 1, bare oneDAL beside the last month
    shards = sum(1 for name, _, _ in monthly.tasks if name.startswith("score-shard"))
    print(f"\n{n:,} products, engine {args.engine}, {shards} shards, {args.months} months; compare ratios; "
          f"load average {_load()}")  # fmt: skip
    score_wall = score_seconds(monthly, None)
    score_in = score_seconds(monthly, "seconds_predict")
    score_file = score_seconds(monthly, "seconds_file")
    total = _print(f"monthly pipeline, month {args.months}", monthly, n)
    print(f"\n{'':<38} {'rows/s':>12} {'seconds':>9}")
    lines = [
        ("whole monthly pipeline", total),
        ("score-shard tasks (process wall)", score_wall),
        ("  scoring end to end (score_file)", score_file),
        ("    tree predict, summed over shards", score_in),
        ("bare XGBoost inplace_predict", bare_result["xgboost"]),
    ]
    if "onedal" in bare_result:
        lines.append(("bare oneDAL predict", bare_result["onedal"]))
    for label, seconds in lines:
        print(f"{label:<38} {n / seconds:>12,.0f} {seconds:>9.2f}")
    print()
    if "onedal" in bare_result:
        pipeline_ratios, file_ratios = [], []
        for i, (bare_i, run) in enumerate(months, start=1):
            wall = run.wall
            pipeline_ratios.append(wall / bare_i["onedal"])
            file_ratios.append(bare_i["onedal"] / score_seconds(run, "seconds_file"))
            what = "into an empty table" if i == 1 else f"superseding {n:,} current rows"
            print(f"month {i} ({what}): pipeline {wall:.2f} s, bare oneDAL {bare_i['onedal']:.2f} s -> "
                  f"{pipeline_ratios[-1]:.2f}x; scoring end to end / bare oneDAL {file_ratios[-1]:.2f}")  # fmt: skip
        # The target's "scoring end to end" is the file's read, features, predict, recommendation and write
        # (`Scorer.score_file`); the task's process wall adds the interpreter, imports and model loading.
        print(f"scoring end to end / bare oneDAL:       {_median(file_ratios)} (target >= 0.85)")
        print(f"score-shard tasks / bare oneDAL:        {bare_last['onedal'] / score_wall:.2f} (process wall, month "
              f"{args.months})")  # fmt: skip
        print(f"whole pipeline / bare oneDAL time:      {_median(pipeline_ratios, 'x')} (target <= 2x)")
        print(f"bare oneDAL vs bare XGBoost:            {bare_result['xgboost'] / bare_result['onedal']:.2f}x faster")
    print(f"whole pipeline / bare XGBoost time:     {total / bare_result['xgboost']:.2f}x")
    peak = max((t for _, run in months for t in run.tasks), key=lambda t: t[1]["rss_mib"])
    print(f"peak RSS of any task:                   {peak[1]['rss_mib']:.0f} MiB ({peak[0]}; target < 1024)")
    daily_total = _print(f"daily run of {args.daily:,} new products", daily, args.daily)
    print(f"daily run wall: {daily_total:.2f} s (target < 10 s; kfp.local adds its own start-up per task)")


def _median(ratios: list[float], unit: str = "") -> str:
    """The median of the months' ratios, with their range when there are several."""
    low, high = min(ratios), max(ratios)
    middle = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{middle:.2f}{unit}"
    return f"{middle:.2f}{unit} (median of {len(ratios)} months, {low:.2f}-{high:.2f})"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _child_bare(workdir: Path, products: Path, engines: str = "") -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    env = {**os.environ, "BENCH_BARE": str(products), ENGINES_ENV: engines}
    done = subprocess.run(
        [sys.executable, __file__, "--workdir", str(workdir)], check=True, capture_output=True, text=True, env=env
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, time.perf_counter() - start


if __name__ == "__main__":
    main()
