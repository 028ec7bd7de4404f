"""What the recommendation policies would cost, judged against the synthetic generator's ground truth.

Seeds a warehouse, then runs the training steps directly (extract week W, split, train every package
type: the packwise step functions, no KFP) and scores every product with the trained models. On the same
products and the same probabilities it compares, per product, against the ground truth
(`packwise.synthetic.ground_truth`, never seen by Packwise):

- threshold: the first type whose probability clears 0.5 (`inference.policy threshold`);
- cost-aware: the lowest expected cost, packaging cost plus damage cost times P(not suitable)
  (`inference.policy cost`), on the raw probabilities and on isotonic-calibrated ones (fitted on the
  validation split);
- always box (the safe default without Packwise) and the oracle (the least protective suitable type).

Columns: damage rate (share whose recommended type is not suitable), packaging cost per product
(`PACKAGING_COST`), total cost per product with damage at `DAMAGE_COST`, and the gap to the oracle's total.
It also prints the calibration of every type's model on the validation split (expected calibration error).

Usage: python bench/report_recommendations.py [--products 20000] [--week 1] [--workdir .packwise/report]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from packwise.artifact import load_model_artifact
from packwise.config import parse_config
from packwise.models.base import predict
from packwise.recommendation import Calibration, fit_isotonic, recommend_by_cost, reliability
from packwise.scoring import recommend
from packwise.snapshot import extract_snapshot
from packwise.split import read_split, split_snapshot
from packwise.synthetic import (
    DAMAGE_COST,
    PACKAGE_TYPES,
    PACKAGING_COST,
    SeedSpec,
    ground_truth,
    packaging_outcome,
    seed_warehouse,
)
from packwise.training import train as train_candidate
from packwise.warehouse import open_warehouse


def oracle(truth: pd.DataFrame) -> pd.Series:
    """The least protective suitable type of every product; box when none is."""
    pick = np.full(len(truth), "box", dtype=object)
    for t in reversed(PACKAGE_TYPES):
        pick = np.where(truth[f"suitable_{t}"].to_numpy(), t, pick)
    return pd.Series(pick, index=truth["product_id"].to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--week", type=int, default=1, help="Train on the labels up to this week (of 4).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path(".packwise/report"))
    opts = parser.parse_args()
    workdir = opts.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    cfg = parse_config(
        {"storage": {"root": str(workdir)}, "warehouse": {"path": str(workdir / "warehouse.duckdb")}}, "report"
    ).resolved()
    workdir.mkdir(parents=True)
    with open_warehouse(cfg.warehouse) as wh:
        spec = SeedSpec(seed=opts.seed, n_products=opts.products, weeks=4, labels_per_week=opts.products // 6)
        seed_warehouse(wh, spec)
        products = wh.fetch_df("SELECT * FROM products ORDER BY product_id")
        labelled = set(wh.fetch_df(f"SELECT DISTINCT product_id FROM labels WHERE week <= {opts.week}")["product_id"])
    snapshot = extract_snapshot(cfg, opts.week)
    train, val = workdir / "train.parquet", workdir / "validation.parquet"
    split_snapshot(snapshot.path, train, val, cfg.split.train_ratio, cfg.split.seed, cfg.package_type_names)

    raw = np.empty((len(products), len(PACKAGE_TYPES)))
    calibrated = np.empty_like(raw)
    print(f"calibration on the validation split (week {opts.week} labels)")
    print(f"{'package type':<14} {'n':>6} {'ECE raw':>8} {'max gap':>8}")
    for j, package_type in enumerate(PACKAGE_TYPES):
        out = workdir / f"{package_type}.tar.gz"
        with contextlib.redirect_stdout(io.StringIO()):  # the task markers are for the local runner
            train_candidate(train, val, package_type, cfg.features, cfg.model, out, "report", snapshot.fingerprint)
        model = load_model_artifact(out)
        val_products, val_labels = read_split(val, package_type)
        val_prob, _ = predict(model.booster, model.spec, val_products)
        rel = reliability(val_labels, val_prob)
        print(f"{package_type:<14} {len(val_labels):>6} {rel.ece:>8.4f} {rel.max_gap:>8.3f}")
        calibration: Calibration = fit_isotonic(val_labels, val_prob)
        raw[:, j], _ = predict(model.booster, model.spec, products)
        calibrated[:, j] = calibration(raw[:, j])

    truth = ground_truth(products)
    ids = products["product_id"].to_numpy()
    costs = [PACKAGING_COST[t] for t in PACKAGE_TYPES]
    names = np.array(PACKAGE_TYPES, dtype=object)
    policies = {
        "threshold 0.5": pd.Series(names[recommend(raw, [0.5] * len(PACKAGE_TYPES))], index=ids),
        "cost-aware": pd.Series(names[recommend_by_cost(raw, costs, DAMAGE_COST)], index=ids),
        "cost, isotonic": pd.Series(names[recommend_by_cost(calibrated, costs, DAMAGE_COST)], index=ids),
        "always box": pd.Series("box", index=ids),
        "oracle": oracle(truth),
    }
    groups = {
        "all products": np.ones(len(ids), dtype=bool),
        "labelled in training": np.isin(ids, list(labelled)),
        "never labelled": ~np.isin(ids, list(labelled)),
    }
    header = (
        f"{'products':<21} {'policy':<15} {'n':>7} {'damage rate':>12} {'packaging €':>12} "
        f"{'total € (damage 25€)':>21} {'gap to oracle':>14}"
    )
    print()
    print(header)
    print("-" * len(header))
    for group, mask in groups.items():
        if not mask.any():
            continue
        part = truth[mask]
        outcomes = {name: packaging_outcome(rec[mask], part) for name, rec in policies.items()}
        best = outcomes["oracle"]["total_cost_mean"]
        for name, out in outcomes.items():
            gap = out["total_cost_mean"] / best - 1.0 if best else 0.0
            print(
                f"{group:<21} {name:<15} {out['n']:>7,} {out['damage_rate'] * 100:>11.2f}% "
                f"{out['packaging_cost_mean']:>12.3f} {out['total_cost_mean']:>21.3f} {gap * 100:>13.1f}%"
            )
    shares = packaging_outcome(policies["cost-aware"], truth)["share"]
    print("cost-aware recommended shares: " + ", ".join(f"{t} {s * 100:.1f}%" for t, s in shares.items()))


if __name__ == "__main__":
    main()
