"""The inference job: steps (`steps`, `models`, `load`), shard planning (`shards`) and the run's summary (`summary`).

The names other code uses are importable from here: ``from packwise.inference import score_shard``.
"""

from packwise.inference.load import load_predictions, notify_inference
from packwise.inference.models import check_models, model_versions, parse_pins, resolve_models
from packwise.inference.shards import (
    MANIFEST_FILE,
    PRODUCTS_FILE,
    SHARD_PREFIX,
    inference_dir,
    load_scoring_models,
    rows_per_shard,
    shard_name,
    shard_products,
)
from packwise.inference.steps import (
    MODES,
    check_daily_query,
    check_mode,
    collect_scores,
    extract_products,
    prepare_products,
    query_key,
    score_shard,
)
from packwise.inference.summary import inference_summary_markdown, summarize_inference_run

__all__ = [
    "MANIFEST_FILE",
    "MODES",
    "PRODUCTS_FILE",
    "SHARD_PREFIX",
    "check_daily_query",
    "check_mode",
    "check_models",
    "collect_scores",
    "extract_products",
    "inference_dir",
    "inference_summary_markdown",
    "load_predictions",
    "load_scoring_models",
    "model_versions",
    "notify_inference",
    "parse_pins",
    "prepare_products",
    "query_key",
    "resolve_models",
    "rows_per_shard",
    "score_shard",
    "shard_name",
    "shard_products",
    "summarize_inference_run",
]
