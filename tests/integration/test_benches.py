"""Every benchmark under bench/ runs to its report on a few thousand rows.

The benchmarks are where Packwise's speed and memory targets live (never timed assertions in tests), so
one that no longer runs is a target nobody measures: bench_scoring called `ScoringModel` with an argument
that had been removed, and nothing noticed. These runs check that each script finishes and prints the
lines its targets are read from; the numbers at this size mean nothing and are not checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from packwise.engine import onedal_available
from tests.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run_bench(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """The script's stdout; its stderr's tail in the failure when it exits non-zero."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workdir for bench_scoring and bench_inference: both train the same four models into it, once."""
    return tmp_path_factory.mktemp("bench")


def test_bench_scoring_reports_every_target(models_dir: Path) -> None:
    out = run_bench(
        "bench_scoring.py", "--products", "6000", "--small", "3000", "--csv-rows", "500", "--repeats", "2",
        "--workdir", str(models_dir),
    )  # fmt: skip
    for line in (
        "throughput Packwise / bare",
        "median of 2 pairs",
        "engine set-up per task",
        "wall time outside prediction",
        "peak RSS growth 3,000 -> 6,000",
        "Packwise speed-up per row vs CSV",
    ):
        assert line in out
    if onedal_available():  # the oneDAL scorer beside the engine Packwise scored with before it
        assert "throughput Packwise onedal (median) / Packwise xgboost" in out


def test_bench_inference_reports_the_pipeline_and_the_daily_run(models_dir: Path) -> None:
    out = run_bench(
        "bench_inference.py", "--products", "6000", "--daily", "300", "--months", "2", "--workdir", str(models_dir)
    )
    for line in ("whole monthly pipeline", "bare XGBoost inplace_predict", "peak RSS of any task", "daily run wall"):
        assert line in out
    assert "daily run of 300 new products" in out
    if onedal_available():
        assert "month 1 (into an empty table)" in out and "month 2 (superseding 6,000 current rows)" in out
        assert "(median of 2 months," in out


def test_bench_warehouse_reports_extract_load_and_retention(tmp_path: Path, postgres: PostgresServer) -> None:
    out = run_bench(
        "bench_warehouse.py", "--backends", "duckdb,postgres,postgres-plain", "--products", "3000", "--scale", "2",
        "--history", "2", "--retention-products", "300", "--workdir", str(tmp_path / "work"),
        env={"PACKWISE_BENCH_PG_DSN": postgres.create_database()},
    )  # fmt: skip
    for backend in ("duckdb", "postgres", "postgres-plain"):
        assert f"{backend} load phases (s): " in out
        assert f"{backend} retention: after 13 monthly loads of 300 products with keep_runs=12" in out
    assert "OVER" not in out  # no backend holds more runs than keep_runs
    assert "current table swapped / one table (earlier releases)" in out


def test_bench_training_reports_the_component_ratio() -> None:
    out = run_bench("bench_training.py", "--labels-per-type", "1500", "--repeats", "1", "--skip-dag")
    assert "training component vs bare xgboost.train" in out and "(target <= 1.15)" in out
