"""A realistic synthetic catalogue and weekly label history, deterministic from a seed.

- `catalogue`: item archetypes and the products drawn from them;
- `truth`: the ground-truth suitability of every package type and what recommendations cost;
- `labels`: the weekly label history and the knobs that inject label problems (`SeedSpec`);
- `seeding`: writing both into a warehouse.

The ground truth is for tests and benchmarks only; it is never written to the warehouse.
"""

from packwise.synthetic.catalogue import (
    BASE_DATE,
    CATEGORIES,
    DAMAGE_COST,
    FEEDBACK_RATE,
    MATERIALS,
    PACKAGE_TYPES,
    PACKAGING_COST,
    generate_products,
)
from packwise.synthetic.labels import (
    LabelCorruption,
    LabelDrop,
    LabelNoise,
    LabelRewrite,
    LabelShift,
    SeedSpec,
    SeedSummary,
    generate_labels,
)
from packwise.synthetic.seeding import add_products, add_products_after_last_run, seed_warehouse
from packwise.synthetic.truth import ground_truth, packaging_outcome

__all__ = [
    "BASE_DATE",
    "CATEGORIES",
    "DAMAGE_COST",
    "FEEDBACK_RATE",
    "MATERIALS",
    "PACKAGE_TYPES",
    "PACKAGING_COST",
    "LabelCorruption",
    "LabelDrop",
    "LabelNoise",
    "LabelRewrite",
    "LabelShift",
    "SeedSpec",
    "SeedSummary",
    "add_products",
    "add_products_after_last_run",
    "generate_labels",
    "generate_products",
    "ground_truth",
    "packaging_outcome",
    "seed_warehouse",
]
