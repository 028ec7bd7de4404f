"""The synthetic ground truth: whether a package type suits a product, and what recommendations cost.

Suitability is a known rule over the product's attributes and title (`ground_truth`); the labels are
Bernoulli draws from it. The ground truth is for tests and benchmarks only; it is never written to the
warehouse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from packwise.synthetic.catalogue import DAMAGE_COST, PACKAGE_TYPES, PACKAGING_COST

if TYPE_CHECKING:
    from collections.abc import Sequence


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logits(products: pd.DataFrame) -> dict[str, np.ndarray]:
    """The suitability logit of every package type, from the product's attributes and title."""
    dims = np.sort(products[["length_cm", "width_cm", "height_cm"]].to_numpy(dtype=float), axis=1)
    min_d, max_d = dims[:, 0], dims[:, 2]
    boxiness = min_d / np.maximum(max_d, 1e-6)
    weight = products["weight_kg"].to_numpy(dtype=float)
    frag = products["fragility"].to_numpy(dtype=float)
    liquid = products["is_liquid"].to_numpy(dtype=bool).astype(float)
    battery = products["has_battery"].to_numpy(dtype=bool).astype(float)
    material = products["material"].astype(str)
    category = products["category"].astype(str)
    title = products["title"].astype(str).str.lower()
    boxed = title.str.contains(r"\b(?:in gift box|boxed|in retail box)\b", regex=True).to_numpy().astype(float)
    brittle = material.isin(["glass", "ceramic"]).to_numpy()
    fragile_set = (title.str.contains(r"\bset of \d", regex=True).to_numpy() & brittle).astype(float)
    soft = (material == "textile").to_numpy().astype(float)
    sturdy = material.isin(["cardboard", "wood", "metal"]).to_numpy().astype(float)
    pliable = material.isin(["paper", "plastic"]).to_numpy().astype(float)
    retail_ready = category.isin(["tools", "electronics", "toys"]).to_numpy().astype(float)
    tiny = (max_d < 10).astype(float)

    return {
        "own_container": (
            -1.2
            + 1.0 * boxed
            + 1.5 * sturdy
            + 0.8 * retail_ready
            + 5.0 * (boxiness - 0.3)
            - 9.0 * (frag - 0.2)
            - 2.5 * liquid
            - 2.5 * soft
            - 2.0 * tiny
            - 2.0 * fragile_set
        )
        * 2.5,
        "bag": (
            0.2
            + 3.5 * soft
            + 0.8 * pliable
            - 12.0 * (frag - 0.2)
            - 3.5 * liquid
            - 1.2 * np.maximum(weight - 2.0, 0.0)
            - 0.04 * np.maximum(max_d - 60.0, 0.0)
            - 1.0 * battery
        )
        * 1.8,
        "mailer": (
            2.0
            - 1.1 * (min_d - 4.0)
            - 2.0 * np.maximum(weight - 1.0, 0.0)
            - 9.0 * (frag - 0.25)
            - 3.0 * liquid
            - 0.2 * np.maximum(max_d - 45.0, 0.0)
            - 1.5 * fragile_set
        )
        * 1.3,
        "box": (
            4.0 - 0.15 * np.maximum(max_d - 75.0, 0.0) - 0.3 * np.maximum(weight - 20.0, 0.0) - 2.0 * (min_d > 45.0)
        )
        * 1.5,
    }


def ground_truth(products: pd.DataFrame, package_types: Sequence[str] = PACKAGE_TYPES) -> pd.DataFrame:
    """The noise-free suitability of every product for every package type. Tests and benchmarks only.

    Args:
        products: Rows with the products table's columns (title included: it carries facts).
        package_types: Types to evaluate, each one of `PACKAGE_TYPES`.

    Returns:
        `product_id`, then per type `p_<type>` (probability of being suitable) and `suitable_<type>`
        (p >= 0.5), in the order of `products`.
    """
    unknown = [t for t in package_types if t not in PACKAGE_TYPES]
    if unknown:
        raise ValueError(f"package type {unknown[0]!r} has no synthetic ground truth")
    logits = _logits(products)
    out = pd.DataFrame({"product_id": products["product_id"].to_numpy()})
    for t in package_types:
        p = _sigmoid(logits[t])
        out[f"p_{t}"] = p
        out[f"suitable_{t}"] = p >= 0.5
    return out


def packaging_outcome(recommended: pd.Series, truth: pd.DataFrame) -> dict[str, Any]:
    """What a set of recommendations would cost, judged against the ground truth.

    Args:
        recommended: The recommended package type per product, indexed by product_id.
        truth: `ground_truth` of (at least) those products.

    Returns:
        `n`, `damage_rate` (share whose recommended type is not suitable), `expected_damage_rate`
        (mean of 1 - p of the recommended type), `packaging_cost_mean`, `total_cost_mean`
        (packaging plus damage at `DAMAGE_COST`), the same for the oracle (least protective suitable
        type, box when none is) as `oracle_packaging_cost_mean` and `oracle_total_cost_mean`, and
        `share` per package type.
    """
    types = [c.removeprefix("suitable_") for c in truth.columns if c.startswith("suitable_")]
    truth_by_id = truth.set_index("product_id")
    missing = ~recommended.index.isin(truth_by_id.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} recommended products are not in the ground truth")
    unknown = sorted(set(recommended.dropna().astype(str)) - set(types))
    if unknown or recommended.isna().any():
        raise ValueError(f"recommendations must be one of {types}; got {unknown or 'missing values'}")
    rows = truth_by_id.loc[recommended.index]
    rec = recommended.astype(str).to_numpy()
    col = {t: i for i, t in enumerate(types)}
    suitable = rows[[f"suitable_{t}" for t in types]].to_numpy(dtype=bool)
    probability = rows[[f"p_{t}" for t in types]].to_numpy(dtype=float)
    pick = np.array([col[r] for r in rec], dtype=int)
    idx = np.arange(len(rec))
    damaged = ~suitable[idx, pick]
    cost = np.array([PACKAGING_COST.get(t, 0.0) for t in types])[pick]

    ordered = [t for t in PACKAGE_TYPES if t in types]  # least protective first
    oracle = np.full(len(rec), "box" if "box" in types else ordered[-1], dtype=object)
    for t in reversed(ordered):
        oracle = np.where(suitable[:, col[t]], t, oracle)
    oracle_pick = np.array([col[str(t)] for t in oracle], dtype=int)
    oracle_damaged = ~suitable[idx, oracle_pick]
    oracle_cost = np.array([PACKAGING_COST.get(t, 0.0) for t in types])[oracle_pick]
    n = len(rec)

    def _mean(values: np.ndarray) -> float:
        return float(values.mean()) if n else 0.0

    return {
        "n": n,
        "damage_rate": _mean(damaged),
        "expected_damage_rate": _mean(1.0 - probability[idx, pick]),
        "packaging_cost_mean": _mean(cost),
        "total_cost_mean": _mean(cost + DAMAGE_COST * damaged),
        "oracle_packaging_cost_mean": _mean(oracle_cost),
        "oracle_total_cost_mean": _mean(oracle_cost + DAMAGE_COST * oracle_damaged),
        "share": {t: _mean(rec == t) for t in types},
    }

