"""What the recommendations would cost, judged against the synthetic generator's ground truth.

Runs the real pipelines (kfp.local): seed a warehouse, train week 1, `infer --mode monthly`; then reads the
current predictions back and compares, per product, the recommended package type with the ground truth
(`packwise.synthetic.ground_truth`, never seen by Packwise):

- damage rate: share of products whose recommended type is not suitable;
- packaging cost per product (`PACKAGING_COST`) and total cost with damage at `DAMAGE_COST`;

next to two references: always box (the safe default without Packwise) and the oracle (the least
protective suitable type; box when none is). Products are also split into those with a training label
and those never labelled, which is what scoring the inventory is for.

Usage: python bench/report_recommendations.py [--products 20000] [--workdir .packwise/report]
       python bench/report_recommendations.py --config packwise.yaml   # an existing seeded, scored warehouse
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from packwise.config import PackwiseConfig, load_config, parse_config
from packwise.predictions import current_predictions
from packwise.synthetic import PACKAGE_TYPES, SeedSpec, ground_truth, packaging_outcome, seed_warehouse
from packwise.warehouse import open_warehouse


def build(workdir: Path, n_products: int) -> PackwiseConfig:
    from packwise_pipelines.local import inference_run, training_run

    if workdir.exists():
        shutil.rmtree(workdir)
    cfg = parse_config(
        {"storage": {"root": str(workdir)}, "warehouse": {"path": str(workdir / "warehouse.duckdb")}}, "report"
    ).resolved()
    with open_warehouse(cfg.warehouse) as wh:
        seed_warehouse(wh, SeedSpec(seed=7, n_products=n_products, weeks=4, labels_per_week=n_products // 6))
    for name, run in (
        ("train week 1", lambda: training_run(cfg, 1)),
        ("infer monthly", lambda: inference_run(cfg, "monthly")),
    ):
        result = run()
        if not result.succeeded:
            raise SystemExit(f"{name} failed: {result.failed_tasks}; log {result.log_path}")
        print(f"{name}: {result.seconds:.0f}s", flush=True)
    return cfg


def oracle(truth: pd.DataFrame) -> pd.Series:
    """The least protective suitable type of every product; box when none is."""
    pick = np.full(len(truth), "box", dtype=object)
    for t in reversed(PACKAGE_TYPES):
        pick = np.where(truth[f"suitable_{t}"].to_numpy(), t, pick)
    return pd.Series(pick, index=truth["product_id"].to_numpy())


def report(cfg: PackwiseConfig) -> list[tuple[str, str, dict[str, Any]]]:
    with open_warehouse(cfg.warehouse, read_only=True) as wh:
        current = current_predictions(wh)
        products = wh.fetch_df("SELECT * FROM products ORDER BY product_id")
        labelled = set(wh.fetch_df("SELECT DISTINCT product_id FROM labels WHERE week <= 1")["product_id"])
    products = products[products["product_id"].isin(current["product_id"])]
    truth = ground_truth(products.reset_index(drop=True))
    recommended = pd.Series(current["recommended_type"].to_numpy(), index=current["product_id"].to_numpy())
    groups = {
        "all scored products": truth["product_id"],
        "labelled in training": truth["product_id"][truth["product_id"].isin(labelled)],
        "never labelled": truth["product_id"][~truth["product_id"].isin(labelled)],
    }
    rows = []
    best = oracle(truth)
    for group, ids in groups.items():
        if ids.empty:
            continue
        part = truth[truth["product_id"].isin(ids)]
        for name, rec in (
            ("Packwise", recommended.loc[ids.to_numpy()]),
            ("always box", pd.Series("box", index=ids.to_numpy())),
            ("oracle", best.loc[ids.to_numpy()]),
        ):
            rows.append((group, name, packaging_outcome(rec, part)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path(".packwise/report"))
    parser.add_argument("--config", type=Path, default=None, help="Report on this configuration's warehouse as is.")
    opts = parser.parse_args()
    cfg = load_config(opts.config).resolved() if opts.config else build(opts.workdir.resolve(), opts.products)
    rows = report(cfg)
    header = (
        f"{'products':<22} {'policy':<11} {'n':>7} {'damage rate':>12} {'packaging €':>12} {'total € (damage 25€)':>21}"
    )
    print(header)
    print("-" * len(header))
    for group, name, out in rows:
        print(
            f"{group:<22} {name:<11} {out['n']:>7,} {out['damage_rate'] * 100:>11.2f}% "
            f"{out['packaging_cost_mean']:>12.3f} {out['total_cost_mean']:>21.3f}"
        )
    shares = next(out["share"] for group, name, out in rows if name == "Packwise")
    print("Packwise recommended shares: " + ", ".join(f"{t} {s * 100:.1f}%" for t, s in shares.items()))


if __name__ == "__main__":
    main()
