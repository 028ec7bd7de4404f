"""Every model type side by side on the same synthetic weeks and the same train/validation split.

Builds one label snapshot the way the extract step does (the latest label of each product and package
type, weeks 1..N of `packwise.synthetic`), splits it once with `packwise.split.split_snapshot`, then per
package type trains every registered model type with `packwise.training.train` (the training
component's function) and reports:

- validation AUC and PR-AUC (`packwise.evaluation.score_metrics`, the promotion gate's numbers);
- training seconds (reading the split, fitting, writing model.tar.gz);
- scoring rows/s: the streaming scorer (`packwise.scoring.Scorer`, the inference component's) over the
  whole catalogue in one parquet file, reading, feature building (the text model included) and writing;
- model size: bytes of model.tar.gz.

Usage: python bench/report_model_types.py [--products 20000] [--weeks 2] [--labels-per-week 5000]
       [--rounds 200] [--types xgboost,xgboost_text,stacked_text] [--workdir .packwise/report-model-types]
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from packwise.artifact import load_model_artifact
from packwise.config import FeatureConfig, ModelConfig
from packwise.evaluation import score_metrics
from packwise.models import known_model_types
from packwise.models.base import predict
from packwise.scoring import Scorer, ScoringModel
from packwise.split import read_split, split_snapshot
from packwise.synthetic import SeedSpec, generate_labels, generate_products
from packwise.training import train as train_candidate


@dataclass(frozen=True)
class Result:
    package_type: str
    model_type: str
    auc: float
    pr_auc: float
    train_seconds: float
    rows_per_second: float
    model_bytes: int


def build_split(workdir: Path, spec: SeedSpec) -> tuple[Path, Path, Path]:
    """The snapshot's train and validation splits, and the catalogue as one parquet file to score."""
    snap = workdir / "snapshot"
    snap.mkdir(parents=True)
    products = generate_products(spec.n_products, spec.seed, weeks=spec.weeks)
    labels = generate_labels(spec, products)
    latest = labels.sort_values(["week", "observed_at"]).drop_duplicates(["product_id", "package_type"], keep="last")
    catalogue = pa.Table.from_pandas(products, preserve_index=False)
    pq.write_table(catalogue, snap / "products.parquet")
    pq.write_table(
        pa.Table.from_pandas(latest[["product_id", "package_type", "label"]], preserve_index=False),
        snap / "labels.parquet",
    )
    train, val = workdir / "train.parquet", workdir / "val.parquet"
    split_snapshot(snap, train, val, 0.8, 1, list(spec.package_types))
    return train, val, snap / "products.parquet"


def measure(
    workdir: Path, train: Path, val: Path, catalogue: Path, package_type: str, model_type: str, rounds: int
) -> Result:
    out = workdir / "models" / model_type / package_type / "model.tar.gz"
    model = ModelConfig(type=model_type, num_boost_round=rounds)
    start = time.perf_counter()
    train_candidate(train, train, package_type, FeatureConfig(), model, out, "report", "report")
    train_seconds = time.perf_counter() - start
    loaded = load_model_artifact(out)
    products, labels = read_split(val, package_type)
    prob, _ = predict(loaded.booster, loaded.spec, products)
    metrics = score_metrics(labels, prob, 0.5)
    scorer = Scorer([ScoringModel(package_type, 1, loaded.booster, loaded.spec, 0.5)])
    stats = scorer.score_file(catalogue, workdir / "scored" / f"{model_type}-{package_type}.parquet")
    return Result(
        package_type=package_type,
        model_type=model_type,
        auc=metrics.auc,
        pr_auc=metrics.pr_auc,
        train_seconds=train_seconds,
        rows_per_second=stats.rows / stats.seconds,
        model_bytes=out.stat().st_size,
    )


def render(console: Console, results: list[Result], model_types: list[str], package_types: list[str]) -> None:
    for package_type in package_types:
        table = Table(title=f"package type {package_type}")
        for col in ("model type", "val AUC", "val PR-AUC", "train s", "score rows/s", "model kB"):
            table.add_column(col, justify="left" if col == "model type" else "right")
        for r in results:
            if r.package_type == package_type:
                table.add_row(
                    r.model_type,
                    f"{r.auc:.4f}",
                    f"{r.pr_auc:.4f}",
                    f"{r.train_seconds:.1f}",
                    f"{r.rows_per_second:,.0f}",
                    f"{r.model_bytes / 1024:.0f}",
                )
        console.print(table)
    summary = Table(title="mean over package types (AUC per type)")
    summary.add_column("model type", no_wrap=True)
    for col in ("val AUC", "val PR-AUC", "train s", "score rows/s", "model kB", *package_types):
        summary.add_column(col if col not in package_types else f"AUC {col}", justify="right", no_wrap=True)
    base = {r.package_type: r for r in results if r.model_type == model_types[0]}
    for model_type in model_types:
        rows = [r for r in results if r.model_type == model_type]
        summary.add_row(
            model_type,
            f"{np.mean([r.auc for r in rows]):.4f}",
            f"{np.mean([r.pr_auc for r in rows]):.4f}",
            f"{np.mean([r.train_seconds for r in rows]):.1f}",
            f"{np.mean([r.rows_per_second for r in rows]):,.0f}",
            f"{np.mean([r.model_bytes for r in rows]) / 1024:.0f}",
            *(f"{r.auc:.4f}" for r in rows),
        )
    console.print(summary)
    for model_type in model_types[1:]:
        rows = [r for r in results if r.model_type == model_type]
        delta = np.mean([r.auc - base[r.package_type].auc for r in rows])
        speed = np.mean([r.rows_per_second / base[r.package_type].rows_per_second for r in rows])
        console.print(
            f"{model_type} vs {model_types[0]}: AUC {delta:+.4f} (mean over types), scoring speed x{speed:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--weeks", type=int, default=2)
    parser.add_argument("--labels-per-week", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--types", default=",".join(["xgboost", "xgboost_text", "stacked_text"]))
    parser.add_argument("--workdir", type=Path, default=Path(".packwise/report-model-types"))
    args = parser.parse_args()
    model_types = [t for t in args.types.split(",") if t]
    unknown = [t for t in model_types if t not in known_model_types()]
    if unknown:
        raise SystemExit(f"--types: unknown model type {unknown[0]!r}; known: {', '.join(known_model_types())}")
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    spec = SeedSpec(
        seed=args.seed, n_products=args.products, weeks=args.weeks, labels_per_week=args.labels_per_week
    )
    console = Console(width=None if Console().is_terminal else 150)  # piped: wide enough for the summary
    train, val, catalogue = build_split(args.workdir, spec)
    console.print(
        f"{spec.n_products:,} products, weeks 1-{spec.weeks}, {spec.labels_per_week:,} labels per type and week, "
        f"split 0.8 (seed 1), {args.rounds} rounds; scoring {spec.n_products:,} rows per model"
    )
    results = []
    for package_type in spec.package_types:
        for model_type in model_types:
            results.append(measure(args.workdir, train, val, catalogue, package_type, model_type, args.rounds))
    render(console, results, model_types, list(spec.package_types))


if __name__ == "__main__":
    main()
