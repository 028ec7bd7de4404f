"""Distributions of the gate's label-quality statistics, clean and noisy, over seeds: where the bounds go.

For each seed and scenario, seeds a small warehouse, replays training and the gate over its weeks with
every criterion measured, and prints the values of every label-quality statistic and of the validation-split
criteria for every judged week (all replayed weeks but the first) and package type, plus the decision under
the default policy. The knobs of the noisy scenarios hit mailer in week 4.

Usage: python bench/measure_label_quality.py [--seeds 1-5] [--products 6000] [--labels 1200] [--rounds 80]
       [--out file.csv]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from packwise.config import GateConfig, parse_config
from packwise.replay import parse_weeks, replay_gate
from packwise.synthetic import SeedSpec, seed_warehouse
from packwise.warehouse import open_warehouse

SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {},
    "noise 0.3": {"label_noise": {"package_type": "mailer", "week": 4, "fraction": 0.3}},
    "noise 0.6": {"label_noise": {"package_type": "mailer", "week": 4, "fraction": 0.6}},
    "rewrite 0.2": {"rewrite": {"package_type": "mailer", "week": 4, "fraction": 0.2}},
}


def run(
    seed: int, scenario: str, products: int, labels: int, rounds: int, weeks: list[int], root: Path
) -> list[dict[str, Any]]:
    cfg = parse_config(
        {
            "storage": {"root": str(root)},
            "warehouse": {"path": str(root / "warehouse.duckdb")},
            "model": {"num_boost_round": rounds},
        },
        "measure",
    ).resolved()
    cfg.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    with open_warehouse(cfg.warehouse) as wh:
        seed_warehouse(
            wh, SeedSpec(seed=seed, n_products=products, weeks=4, labels_per_week=labels, **SCENARIOS[scenario])
        )
    result = replay_gate(cfg, weeks, {"default": GateConfig()})
    rows = []
    for week in weeks[1:]:  # the first week has no champion
        for package_type, decision in result.decisions["default"][week].items():
            row: dict[str, Any] = {
                "seed": seed, "scenario": scenario, "week": week, "type": package_type, "status": decision.status,
                "reason": decision.reason,
            }  # fmt: skip
            row.update({c.name: c.value for c in decision.criteria if c.kind == "comparative"})
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-5")
    parser.add_argument("--products", type=int, default=6_000)
    parser.add_argument("--labels", type=int, default=1_200, help="Labels per package type per week.")
    parser.add_argument("--rounds", type=int, default=80, help="Boosting rounds (the tests use 80).")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--weeks", default="3-4", help="Weeks replayed; all but the first are judged.")
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for seed in parse_weeks(opts.seeds):
        for scenario in opts.scenarios.split(","):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                rows += run(seed, scenario, opts.products, opts.labels, opts.rounds, parse_weeks(opts.weeks), Path(tmp))
            print(f"seed {seed} {scenario}: {time.perf_counter() - start:.0f}s", flush=True)
    frame = pd.DataFrame(rows)
    if opts.out:
        frame.to_csv(opts.out, index=False)
    cols = ["label_churn", "champion_disagreement", "frozen_auc_drop", "frozen_log_loss_increase", "auc_drop_abs"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.groupby(["scenario", "week", frame["type"] == "mailer"])[cols].agg(["min", "max"]).round(4))
        print(frame.groupby(["scenario", "type"])["status"].value_counts().unstack(fill_value=0))


if __name__ == "__main__":
    main()
