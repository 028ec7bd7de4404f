"""The weekly label history and the knobs that inject label problems into it.

Labels are Bernoulli draws from the ground truth, flipped at the `noise` rate, arriving week by week as
shipments and feedback. Each knob (shift, corrupt, noise, rewrite, drop) draws from its own random stream,
so it changes what it targets and nothing else: the same seed with and without a knob gives identical rows
except the labels the knob touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from packwise.synthetic.catalogue import (
    _CORRUPT_STREAM,
    _DROP_STREAM,
    _LABELS_STREAM,
    _NOISE_STREAM,
    _REWRITE_STREAM,
    _WEEK,
    BASE_DATE,
    FEEDBACK_RATE,
    PACKAGE_TYPES,
    _rng,
    _type_key,
)
from packwise.synthetic.truth import _sigmoid, ground_truth

# -- specification ----------------------------------------------------------------------------------


class _Knob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    package_type: str
    week: int = Field(ge=1)


class LabelShift(_Knob):
    """That week's shipment labels of that type are drawn with a changed base rate (a policy change).

    The mean suitability probability of the week's labelled products moves by `positive_rate_delta`
    (one logit offset for all); feedback later re-stating those shipments carries the shifted label.
    """

    positive_rate_delta: float = Field(gt=-1.0, lt=1.0)


class LabelCorruption(_Knob):
    """That fraction of that week's labels of that type are overwritten with `value`.

    A stuck label feed: e.g. a broken join that defaults the damage flag, so every shipment of the week
    reads as "arrived fine" (suitable). Random flips would be undetectable by any gate that scores on the
    same snapshot; a stuck value shifts the label distribution, which is what the gate watches.
    """

    fraction: float = Field(gt=0.0, le=1.0)
    value: Literal[0, 1] = 1


class LabelNoise(_Knob):
    """That fraction of that week's labels of that type are replaced by random labels.

    A broken join or a mis-keyed feedback feed: the replaced labels are Bernoulli draws at the positive
    rate of the labels they replace, so the week's positive rate is unchanged (unlike `LabelCorruption`)
    and only the link between product and label is lost.
    """

    fraction: float = Field(gt=0.0, le=1.0)


class LabelRewrite(_Knob):
    """In that week, that fraction of the type's labels from earlier weeks are re-stated with random labels.

    A backfill gone wrong: the rows arrive in `week` (as feedback, so the latest label wins) for products
    labelled before it, drawn at the positive rate of the labels they restate. A snapshot of an earlier week
    still holds the old labels, as the champion's snapshot on disk does.
    """

    fraction: float = Field(gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _after_first_week(self) -> Self:
        if self.week < 2:
            raise ValueError("rewrite.week must be 2 or later: week 1 has no earlier labels to rewrite")
        return self


class LabelDrop(_Knob):
    """That fraction of the type's labels from weeks 1..week are missing (a lost partition)."""

    fraction: float = Field(gt=0.0, le=1.0)


class SeedSpec(BaseModel):
    """What `seed_warehouse` generates. The same spec always gives the same rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 7
    n_products: int = Field(25_000, ge=1)
    weeks: int = Field(4, ge=1, le=520)
    labels_per_week: int = Field(4_000, ge=0, description="Shipment labels per package type per week.")
    noise: float = Field(0.03, ge=0.0, lt=0.5, description="Share of shipment labels flipped.")
    package_types: tuple[str, ...] = PACKAGE_TYPES
    shift: LabelShift | None = None
    corrupt: LabelCorruption | None = None
    label_drop: LabelDrop | None = None
    label_noise: LabelNoise | None = None
    rewrite: LabelRewrite | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        unknown = [t for t in self.package_types if t not in PACKAGE_TYPES]
        if unknown:
            raise ValueError(
                f"package type {unknown[0]!r} has no synthetic ground truth; use {', '.join(PACKAGE_TYPES)}"
            )
        if not self.package_types or len(set(self.package_types)) != len(self.package_types):
            raise ValueError("package_types must list each type once, at least one")
        for name in ("shift", "corrupt", "label_drop", "label_noise", "rewrite"):
            knob = getattr(self, name)
            if knob is None:
                continue
            if knob.package_type not in self.package_types:
                raise ValueError(f"{name}.package_type {knob.package_type!r} is not in package_types")
            if knob.week > self.weeks:
                raise ValueError(f"{name}.week {knob.week} is after the last week ({self.weeks})")
        return self


@dataclass(frozen=True)
class SeedSummary:
    """What `seed_warehouse` wrote."""

    n_products: int
    n_labels: int
    n_feedback_labels: int
    weeks: int
    labels_per_type: dict[str, int]
    positive_rate: dict[str, float]


# -- labels -----------------------------------------------------------------------------------------


def _shift_probabilities(p: np.ndarray, delta: float) -> np.ndarray:
    """Moves every probability by one logit offset so that their mean moves by `delta`."""
    if len(p) == 0:
        return p
    logit = np.log(np.clip(p, 1e-9, 1 - 1e-9) / np.clip(1 - p, 1e-9, 1.0))
    target = float(np.clip(p.mean() + delta, 0.001, 0.999))
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() < target:
            lo = mid
        else:
            hi = mid
    return _sigmoid(logit + (lo + hi) / 2)


def generate_labels(spec: SeedSpec, products: pd.DataFrame) -> pd.DataFrame:
    """The weekly label history of `products` (as drawn by `generate_products` for `spec`).

    Each week w draws `spec.labels_per_week` shipments per package type among the products added up
    to week w, preferring pairs not labelled yet (so snapshots grow), then applies the knobs.

    Returns:
        product_id, package_type, label (0/1), week, observed_at, source ('shipment' or 'feedback').
    """
    intro_week = (products["added_at"] - pd.Timestamp(BASE_DATE)) // pd.Timedelta(_WEEK) + 1
    intro = np.clip(intro_week.to_numpy(dtype=int), 1, None)
    ids = products["product_id"].to_numpy()
    truth = ground_truth(products, spec.package_types)
    frames: list[pd.DataFrame] = []
    for package_type in spec.package_types:
        key = _type_key(package_type)
        p_all = truth[f"p_{package_type}"].to_numpy()
        labelled = np.zeros(len(products), dtype=bool)
        for week in range(1, spec.weeks + 1):
            rng = _rng(spec.seed, _LABELS_STREAM, key, week)
            available = intro <= week
            fresh = np.flatnonzero(available & ~labelled)
            seen = np.flatnonzero(available & labelled)
            n_fresh = min(spec.labels_per_week, len(fresh))
            n_seen = min(spec.labels_per_week - n_fresh, len(seen))
            picked = np.concatenate(
                [rng.choice(fresh, n_fresh, replace=False), rng.choice(seen, n_seen, replace=False)]
            ).astype(int)
            labelled[picked] = True
            n = len(picked)
            u_label, u_flip, u_time = rng.random(n), rng.random(n), rng.random(n)
            u_feedback, feedback_lag, u_feedback_time = rng.random(n), rng.geometric(0.6, n), rng.random(n)
            p = p_all[picked]
            if spec.shift and spec.shift.package_type == package_type and spec.shift.week == week:
                p = _shift_probabilities(p, spec.shift.positive_rate_delta)
            clean = u_label < p
            observed = pd.Timestamp(BASE_DATE) + pd.to_timedelta((week - 1 + u_time) * _WEEK.total_seconds(), "s")
            frames.append(
                pd.DataFrame(
                    {
                        "product_id": ids[picked],
                        "package_type": package_type,
                        "label": clean ^ (u_flip < spec.noise),
                        "week": week,
                        "observed_at": observed,
                        "source": "shipment",
                    }
                )
            )
            fb = u_feedback < FEEDBACK_RATE
            fb_week = np.minimum(week + feedback_lag[fb], spec.weeks)
            # Feedback in the last week lands the same week, hours after the shipment.
            fb_time = np.where(
                fb_week > week,
                pd.Timestamp(BASE_DATE)
                + pd.to_timedelta((fb_week - 1 + u_feedback_time[fb]) * _WEEK.total_seconds(), "s"),
                observed[fb] + pd.to_timedelta(1 + u_feedback_time[fb] * 47, "h"),
            )
            frames.append(
                pd.DataFrame(
                    {
                        "product_id": ids[picked][fb],
                        "package_type": package_type,
                        "label": clean[fb],
                        "week": fb_week,
                        "observed_at": pd.to_datetime(fb_time),
                        "source": "feedback",
                    }
                )
            )
    labels = pd.concat(frames, ignore_index=True)
    labels = _apply_corruption(spec, labels)
    labels = _apply_noise(spec, labels)
    labels = _apply_rewrite(spec, labels)
    labels = _apply_drop(spec, labels)
    labels["label"] = labels["label"].astype("int16")
    labels["week"] = labels["week"].astype("int32")
    labels["observed_at"] = labels["observed_at"].dt.floor("s").astype("datetime64[us]")
    return labels.sort_values(["week", "observed_at", "package_type", "product_id"], kind="stable").reset_index(
        drop=True
    )


def _week_rows(
    seed: int, stream: int, knob: LabelCorruption | LabelNoise, labels: pd.DataFrame
) -> tuple[np.ndarray, np.random.Generator]:
    """A random `knob.fraction` of the positions of the knob's week and type in `labels`, and the knob's
    generator (on its own stream, so one knob never shifts another's draws) for any further draws."""
    rows = np.flatnonzero(((labels["package_type"] == knob.package_type) & (labels["week"] == knob.week)).to_numpy())
    rng = _rng(seed, stream, _type_key(knob.package_type), knob.week)
    return rng.choice(rows, round(knob.fraction * len(rows)), replace=False), rng


def _apply_corruption(spec: SeedSpec, labels: pd.DataFrame) -> pd.DataFrame:
    knob = spec.corrupt
    if knob is None:
        return labels
    stuck, _ = _week_rows(spec.seed, _CORRUPT_STREAM, knob, labels)
    out = labels.copy()
    col = out.columns.get_loc("label")
    out.iloc[stuck, col] = bool(knob.value)
    return out


def _apply_noise(spec: SeedSpec, labels: pd.DataFrame) -> pd.DataFrame:
    knob = spec.label_noise
    if knob is None:
        return labels
    noisy, rng = _week_rows(spec.seed, _NOISE_STREAM, knob, labels)
    rate = float(labels["label"].to_numpy()[noisy].astype(float).mean()) if len(noisy) else 0.0
    out = labels.copy()
    out.iloc[noisy, out.columns.get_loc("label")] = rng.random(len(noisy)) < rate
    return out


def _apply_rewrite(spec: SeedSpec, labels: pd.DataFrame) -> pd.DataFrame:
    knob = spec.rewrite
    if knob is None:
        return labels
    earlier = labels[(labels["package_type"] == knob.package_type) & (labels["week"] < knob.week)]
    # The label each product holds before the rewrite week: the latest one, as the labels query picks it.
    latest = earlier.sort_values(["week", "observed_at", "source"], kind="stable").groupby("product_id").tail(1)
    latest = latest.sort_values("product_id", kind="stable")
    rng = _rng(spec.seed, _REWRITE_STREAM, _type_key(knob.package_type), knob.week)
    picked = latest.iloc[np.sort(rng.choice(len(latest), round(knob.fraction * len(latest)), replace=False))]
    rate = float(picked["label"].astype(float).mean()) if len(picked) else 0.0
    start = pd.Timestamp(BASE_DATE) + (knob.week - 1) * _WEEK
    rewritten = pd.DataFrame(
        {
            "product_id": picked["product_id"].to_numpy(),
            "package_type": knob.package_type,
            "label": rng.random(len(picked)) < rate,
            "week": knob.week,
            "observed_at": start + pd.to_timedelta(rng.random(len(picked)) * _WEEK.total_seconds(), "s"),
            "source": "feedback",
        }
    )
    return pd.concat([labels, rewritten], ignore_index=True)


def _apply_drop(spec: SeedSpec, labels: pd.DataFrame) -> pd.DataFrame:
    knob = spec.label_drop
    if knob is None:
        return labels
    rows = np.flatnonzero(((labels["package_type"] == knob.package_type) & (labels["week"] <= knob.week)).to_numpy())
    rng = _rng(spec.seed, _DROP_STREAM, _type_key(knob.package_type), knob.week)
    dropped = rng.choice(rows, round(knob.fraction * len(rows)), replace=False)
    return labels.drop(index=labels.index[dropped]).reset_index(drop=True)

