"""Machine-learning settings: features, split, model, package types, promotion gate and inference."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from packwise.config.base import StrictModel as _Strict

PACKAGE_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# Inference: the monthly run scores the whole inventory; the daily run the products added after the
# watermark (`$since`, the largest `added_at` a previous run loaded). Rows are unloaded ordered by product_id.
DEFAULT_INVENTORY_SQL = "SELECT p.* FROM products AS p"
DEFAULT_NEW_PRODUCTS_SQL = "SELECT p.* FROM products AS p WHERE p.added_at > $since"


# Upper bounds of knobs that size memory or time (issue 12). A scoring batch is a dense float32 matrix of
# batch_rows x feature columns; `PackwiseConfig` keeps it under DENSE_BATCH_LIMIT_BYTES, the per-field
# bounds stop absurd values (a 1e9 vocabulary, 100,000 rounds) even before that cross-section check.
MAX_CATEGORIES = 10_000
MAX_BOOST_ROUNDS = 10_000
MIN_SHARD_ROWS = 100  # tests split 1,200 rows into shards of 300-700
DENSE_BATCH_LIMIT_BYTES = 1 << 30

DerivedFeature = Literal["volume_cm3", "max_dim_cm", "min_dim_cm", "density_kg_per_l"]
_ALL_DERIVED: tuple[DerivedFeature, ...] = ("volume_cm3", "max_dim_cm", "min_dim_cm", "density_kg_per_l")
_DERIVED_INPUTS: dict[str, tuple[str, ...]] = {
    "volume_cm3": ("length_cm", "width_cm", "height_cm"),
    "max_dim_cm": ("length_cm", "width_cm", "height_cm"),
    "min_dim_cm": ("length_cm", "width_cm", "height_cm"),
    "density_kg_per_l": ("length_cm", "width_cm", "height_cm", "weight_kg"),
}


class FeatureConfig(_Strict):
    """Which product attributes feed the models. The same spec builds training and serving rows."""

    numeric: list[str] = Field(
        default_factory=lambda: ["length_cm", "width_cm", "height_cm", "weight_kg", "fragility", "price"],
        description="Numeric product columns used as they are.",
    )
    boolean: list[str] = Field(
        default_factory=lambda: ["is_liquid", "has_battery"], description="Boolean product columns (as 0/1)."
    )
    categorical: list[str] = Field(
        default_factory=lambda: ["category", "material"],
        description="String columns, one-hot encoded on the training vocabulary; unseen values score as zeros.",
    )
    derived: list[DerivedFeature] = Field(
        default_factory=lambda: list(_ALL_DERIVED), description="Features computed from dimensions and weight."
    )
    text: str = Field("title", description="Text column, used only by model types that read text.")
    max_categories: int = Field(
        64, ge=1, le=MAX_CATEGORIES, description="Most frequent values kept per categorical column."
    )

    @model_validator(mode="before")
    @classmethod
    def _own_columns(cls, data: Any) -> Any:
        """A config naming its own feature columns gets no synthetic-catalogue defaults for the other groups.

        The defaults describe `packwise seed`'s catalogue. Once a config lists any of numeric, boolean or
        categorical, the groups it leaves out are empty and `derived` keeps only the features whose inputs
        (length_cm, width_cm, height_cm, weight_kg) are among its numeric columns.
        """
        if not isinstance(data, dict) or not {"numeric", "boolean", "categorical"} & set(data):
            return data
        out = {"numeric": [], "boolean": [], "categorical": [], **data}
        if "derived" not in data:
            numeric = set(out["numeric"] or [])
            out["derived"] = [d for d in _ALL_DERIVED if set(_DERIVED_INPUTS[d]) <= numeric]
        return out

    @model_validator(mode="after")
    def _no_overlap(self) -> FeatureConfig:
        seen: dict[str, str] = {}
        for group in ("numeric", "boolean", "categorical"):
            for col in getattr(self, group):
                if col in seen:
                    raise ValueError(f"column {col!r} is listed in both {seen[col]} and {group}")
                seen[col] = group
        if not seen:
            raise ValueError("no feature columns: list at least one numeric, boolean or categorical column")
        return self

    def input_columns(self, with_text: bool = False) -> list[str]:
        """Product columns the feature builder reads."""
        cols = [*self.numeric, *self.boolean, *self.categorical]
        for d in self.derived:
            cols += [c for c in _DERIVED_INPUTS[d] if c not in cols]
        if with_text and self.text not in cols:
            cols.append(self.text)
        return cols

    def dense_width(self) -> int:
        """Most columns of the dense feature matrix: every categorical column at its full vocabulary."""
        return len(self.numeric) + len(self.boolean) + len(self.derived) + len(self.categorical) * self.max_categories


class SplitConfig(_Strict):
    """Train/validation split: by product (no product in both), stratified by its labels."""

    train_ratio: float = Field(0.8, gt=0.0, lt=1.0, description="Share of products in the training split.")
    seed: int = Field(42, description="Seed of the split; the same seed and data give the same split.")


_DEFAULT_PARAMS: dict[str, float | int | str] = {
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "tree_method": "hist",
}  # no nthread: a task uses the threads its runner gives it (OMP_NUM_THREADS, else every core)


class ModelConfig(_Strict):
    """Model type (a plugin name) and its hyperparameters."""

    type: str = Field("xgboost", description="Registered model type: xgboost, xgboost_text or stacked_text.")
    params: dict[str, float | int | str] = Field(
        default_factory=lambda: dict(_DEFAULT_PARAMS),
        description="XGBoost booster parameters (objective and eval_metric are set by Packwise).",
    )
    num_boost_round: int = Field(200, ge=1, le=MAX_BOOST_ROUNDS, description="Boosting rounds.")
    text_hash_features: int = Field(
        1024, ge=16, le=1 << 20, description="Hashed title n-gram features (text model types only)."
    )

    @field_validator("params")
    @classmethod
    def _no_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = {"objective", "eval_metric"} & set(value)
        if reserved:
            raise ValueError(f"{', '.join(sorted(reserved))} is set by Packwise; remove it from model.params")
        return value


class PackageTypeConfig(_Strict):
    """One package type. The list order is the protection order: least protective first."""

    name: str
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Suitability probability that recommends it.")
    cost: float | None = Field(
        None, ge=0.0, description="Packaging cost of one package (material and handling), for inference.policy cost."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PACKAGE_TYPE_NAME.match(value):
            raise ValueError(f"package type {value!r} must be lower_snake_case")
        return value


class Limit(_Strict):
    """Bounds of one gate criterion: past `review` needs a person, past `reject` is rejected."""

    review: float | None = None
    reject: float | None = None

    def out_of_range(self, low: float, high: float | None) -> str | None:
        """The first bound outside [low, high] (high None: unbounded) as ``review 1.5``, else None."""
        for key in ("review", "reject"):
            value = getattr(self, key)
            if value is not None and (value < low or (high is not None and value > high) or value != value):
                return f"{key} {value}"
        return None


def _lim(review: float | None, reject: float | None, description: str) -> Any:
    return Field(default_factory=lambda: Limit(review=review, reject=reject), description=description)


# Range of each gate criterion's bounds: AUCs and shares in [0, 1]; drops, increases, log losses and
# count ratios are 0 or more (a negative drop bound would reject a candidate equal to its champion).
_UNIT = (0.0, 1.0, "between 0 and 1")
_LIMIT_RANGES: dict[str, tuple[float, float | None, str]] = {
    "min_auc": _UNIT,
    "min_pr_auc": _UNIT,
    "auc_drop_abs": _UNIT,
    "pr_auc_drop_abs": _UNIT,
    "frozen_auc_drop": _UNIT,
    "label_churn": _UNIT,
    "champion_disagreement": _UNIT,
    "label_shift": _UNIT,
}


class GateConfig(_Strict):
    """Promotion gate. Drops and increases are positive when the candidate is worse than the champion.

    Absolute criteria (minimum scores) always apply; comparative ones only when a champion exists.
    """

    min_auc: Limit = _lim(None, 0.80, "Lowest candidate ROC AUC on the validation split.")
    min_pr_auc: Limit = _lim(None, 0.50, "Lowest candidate PR AUC (average precision).")
    max_log_loss: Limit = _lim(None, 0.60, "Highest candidate log loss.")
    auc_drop_abs: Limit = _lim(0.01, 0.03, "Champion AUC minus candidate AUC, both on this run's split.")
    auc_drop_rel: Limit = _lim(None, 0.04, "AUC drop as a fraction of the champion's AUC.")
    pr_auc_drop_abs: Limit = _lim(0.02, 0.05, "Champion PR AUC minus candidate PR AUC.")
    pr_auc_drop_rel: Limit = _lim(None, 0.07, "PR AUC drop as a fraction of the champion's.")
    log_loss_increase_abs: Limit = _lim(0.02, 0.06, "Candidate log loss minus champion log loss.")
    log_loss_increase_rel: Limit = _lim(None, 0.2, "Log loss increase as a fraction of the champion's.")
    label_shift_metric: Literal["jensen_shannon", "l_infinity"] = Field(
        "jensen_shannon", description="jensen_shannon (divergence in bits) or l_infinity (largest share change)."
    )
    label_shift: Limit = _lim(
        0.003, 0.015, "Shift of the training label distribution against the champion's (label_shift_metric)."
    )
    label_count_min_fraction: Limit = _lim(0.9, 0.5, "Lowest candidate/champion training label count ratio.")
    label_count_max_fraction: Limit = _lim(5.0, None, "Highest candidate/champion training label count ratio.")
    # Label quality against the champion's snapshot (packwise.label_quality); defaults from measurements
    # over seeds 1-5, clean and noisy (README, "Label-quality criteria").
    label_churn: Limit = _lim(0.01, 0.03, "Share of products labelled in both snapshots whose label changed.")
    champion_disagreement: Limit = _lim(
        0.03, 0.06, "Share of new labels the champion confidently contradicts, minus that share on its validation."
    )
    frozen_auc_drop: Limit = _lim(
        None, 0.03, "Champion AUC minus candidate AUC on the champion's validation labels as they were."
    )
    frozen_log_loss_increase: Limit = _lim(
        0.015, 0.03, "Candidate log loss minus champion log loss on the champion's validation labels as they were."
    )
    confident_probability: float = Field(
        0.9, gt=0.5, lt=1.0, description="A champion probability this far towards a class is a confident prediction."
    )
    auto_approve: bool = Field(
        True,
        description="false: a candidate that passes every criterion waits as PendingManualApproval for a person "
        "(runs started by trigger files get false unless cluster.trigger.allow_auto_approve).",
    )

    @model_validator(mode="after")
    def _in_range(self) -> GateConfig:
        for name in type(self).model_fields:
            lim = getattr(self, name)
            if not isinstance(lim, Limit):
                continue
            low, high, what = _LIMIT_RANGES.get(name, (0.0, None, "0 or more"))
            bad = lim.out_of_range(low, high)
            if bad:
                raise ValueError(f"gate.{name}.{bad} is out of range; it must be {what}")
        return self

    @model_validator(mode="after")
    def _ordered(self) -> GateConfig:
        lower_bounded = {"min_auc", "min_pr_auc", "label_count_min_fraction"}
        for name in type(self).model_fields:
            lim = getattr(self, name)
            if not isinstance(lim, Limit) or lim.review is None or lim.reject is None:
                continue
            bad = lim.review < lim.reject if name in lower_bounded else lim.review > lim.reject
            if bad:
                raise ValueError(f"gate.{name}: review must be reached before reject")
        return self

class InferenceConfig(_Strict):
    """The inference pipeline: which products it scores, how it shards them, how it scores them."""

    inventory_query: str = Field(DEFAULT_INVENTORY_SQL, description="SQL selecting every product (monthly mode).")
    new_products_query: str = Field(
        DEFAULT_NEW_PRODUCTS_SQL, description="SQL selecting products added after $since (daily mode)."
    )
    watermark_column: str = Field(
        "added_at", description="Timestamp column of the products queries; its largest loaded value is the watermark."
    )
    # A scoring task pays 2-3 s of process start, imports and model loading whatever its size, and streams
    # its shard in record batches (memory flat in shard size): 5M-row shards scored the 5M-product month
    # 1.6x faster than 1M-row ones (bench_inference.py) and still fan 300M products out over 60 tasks.
    shard_target_rows: int = Field(
        5_000_000, ge=MIN_SHARD_ROWS, le=100_000_000, description="Most products per shard (one scoring task each)."
    )
    shard_target_bytes: int = Field(
        1 << 30, ge=1024 * 1024, le=1 << 32, description="Most uncompressed input bytes per shard."
    )
    batch_rows: int = Field(131_072, ge=1_024, le=1_048_576, description="Rows per record batch while scoring.")
    local_parallelism: int = Field(
        2, ge=1, le=64, description="Shards scored at once (kfp.local caps it at 2; a cluster honours it)."
    )
    # Recommendation policy (packwise.recommendation); see the README, "Cost-aware recommendation".
    policy: Literal["threshold", "cost"] = Field(
        "threshold",
        description="threshold: least protective type clearing its threshold; cost: lowest expected cost "
        "(needs package_types[].cost and damage_cost).",
    )
    damage_cost: float | None = Field(
        None, gt=0.0, description="Cost of one item damaged in transit (refund, return, goodwill)."
    )
    package_costs: dict[str, float] | None = Field(
        None, description="Copied from package_types[].cost when the config is resolved; leave unset."
    )
    score_threads: int = Field(
        0,
        ge=0,
        le=512,
        description="XGBoost threads per scoring task; 0 uses the task's share (OMP_NUM_THREADS, else every core).",
    )
    keep_runs: int | None = Field(
        12,
        ge=1,
        description="Runs of each mode (daily, monthly) whose superseded predictions are kept (newest first); "
        "older history is pruned by each load, current rows never; null keeps every run.",
    )
    engine: Literal["auto", "xgboost", "onedal"] = Field(
        "auto",
        description="Tree engine in evaluation and scoring: auto takes oneDAL where daal4py imports (x86-64), "
        "else XGBoost; hashed-text (sparse) rows always go to XGBoost.",
    )

    @field_validator("watermark_column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            raise ValueError(f"{value!r} must be a plain column name")
        return value

    @field_validator("new_products_query")
    @classmethod
    def _uses_since(cls, value: str) -> str:
        if "$since" not in value:
            raise ValueError("the daily query must filter on $since (the last loaded watermark)")
        return value


def package_type_names(items: list[Any]) -> list[str]:
    """Names from a pipeline's `package_types` parameter: dicts {name, threshold} or plain names."""
    return [str(i["name"]) if isinstance(i, dict) else str(i) for i in items]

