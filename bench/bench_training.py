"""Training benchmarks, measured side by side in one run (this machine is noisy; compare ratios, not seconds).

1. The training component's work (`packwise.training.train`: read the split, build features,
   QuantileDMatrix, train, save model.tar.gz) as a ratio of a bare `xgboost.train` on the same rows and
   parameters already in memory. Target: at most 1.15.
2. The whole local DAG (kfp.local, subprocess runner) on about 100k labels: wall time of a first run
   (target: under 60 s), and of the same week again, which must be cache hits after the extract
   (target: at most a fifth of the first run).

Usage: python bench/bench_training.py [--labels-per-type 25000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import xgboost as xgb

from packwise.config import PackwiseConfig, parse_config
from packwise.features import build_features
from packwise.models import get_model_type
from packwise.snapshot import extract_snapshot
from packwise.split import read_split, split_snapshot
from packwise.synthetic import SeedSpec, seed_warehouse
from packwise.training import train
from packwise.warehouse import open_warehouse


def _config(root: Path) -> PackwiseConfig:
    return parse_config(
        {"storage": {"root": str(root)}, "warehouse": {"path": str(root / "warehouse.duckdb")}}, "bench"
    ).resolved()


def bench_component(cfg: PackwiseConfig, repeats: int, package_type: str = "box") -> dict[str, float]:
    info = extract_snapshot(cfg, 1)
    train_path = cfg.storage.root / "bench-train.parquet"
    split_snapshot(
        info.path, train_path, cfg.storage.root / "bench-val.parquet", cfg.split.train_ratio, cfg.split.seed,
        cfg.package_type_names,
    )
    plugin = get_model_type(cfg.model.type)
    products, labels = read_split(train_path, package_type)
    spec = plugin.fit_spec(products, cfg.features, cfg.model)
    matrix = build_features(products, spec).matrix()
    params = plugin.booster_params(cfg.model)  # type: ignore[attr-defined]

    def bare() -> None:
        dtrain = xgb.QuantileDMatrix(matrix, label=labels, max_bin=256)
        xgb.train(params, dtrain, num_boost_round=cfg.model.num_boost_round)

    def component() -> None:
        val_path = cfg.storage.root / "bench-val.parquet"
        model_out = cfg.storage.root / "bench-model.tar.gz"
        train(train_path, val_path, package_type, cfg.features, cfg.model, model_out, "k", "f")

    bare()  # warm-up: thread pools, page cache
    component_s, bare_s = [], []
    for _ in range(repeats):  # interleaved, so drift hits both sides alike
        t = time.perf_counter()
        component()
        component_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        bare()
        bare_s.append(time.perf_counter() - t)
    c, b = statistics.median(component_s), statistics.median(bare_s)
    return {"rows": float(len(labels)), "component_s": c, "bare_s": b, "ratio": c / b}


def bench_dag(cfg: PackwiseConfig) -> dict[str, float]:
    from packwise_pipelines.local import training_run

    first = training_run(cfg, 1, run_id="bench-first")
    again = training_run(cfg, 1, run_id="bench-again")
    if not (first.succeeded and again.succeeded):
        raise SystemExit(f"DAG failed; see {first.log_path} / {again.log_path}")
    executed_again = [e.task for e in again.events if e.state in {"succeeded", "failed"}]
    return {
        "first_s": first.seconds,
        "again_s": again.seconds,
        "ratio": again.seconds / first.seconds,
        "tasks_first": float(sum(e.state in {"succeeded", "failed"} for e in first.events)),
        "tasks_executed_again": float(len(executed_again)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels-per-type", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-dag", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packwise-bench-") as tmp:
        cfg = _config(Path(tmp) / "state")
        cfg.storage.root.mkdir(parents=True)
        n_products = int(args.labels_per_type * 2.4)
        with open_warehouse(cfg.warehouse) as warehouse:
            seeded = seed_warehouse(
                warehouse, SeedSpec(n_products=n_products, weeks=1, labels_per_week=args.labels_per_type)
            )
        print(f"seeded: {seeded}")
        comp = bench_component(cfg, args.repeats)
        print(
            f"training component vs bare xgboost.train ({int(comp['rows'])} rows, median of {args.repeats}): "
            f"{comp['component_s']:.2f}s vs {comp['bare_s']:.2f}s -> ratio {comp['ratio']:.3f} (target <= 1.15)"
        )
        if not args.skip_dag:
            dag = bench_dag(cfg)
            print(
                f"local DAG on {4 * args.labels_per_type} labels: first run {dag['first_s']:.1f}s "
                f"({int(dag['tasks_first'])} tasks executed; target < 60 s); same week again {dag['again_s']:.1f}s "
                f"({int(dag['tasks_executed_again'])} executed) -> ratio {dag['ratio']:.3f} (target <= 0.20)"
            )


if __name__ == "__main__":
    main()
