"""The synthetic catalogue: item archetypes per category and the products drawn from them.

Products are drawn from item archetypes ("ceramic coffee mug", "cordless drill", ...) per category, so
dimensions, weight, material, fragility and the title agree with each other. Two facts live only in the
title, as on a real marketplace: whether the item already sits in a sturdy retail box ("in gift box",
"boxed") and whether it is a multi-piece set of glass or ceramic ("set of 6").

Every random draw comes from its own stream keyed by (seed, purpose, package type, week), see `_rng`.
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

PACKAGE_TYPES: tuple[str, ...] = ("own_container", "bag", "mailer", "box")
"""The package types the synthetic ground truth knows, least protective first."""

CATEGORIES: tuple[str, ...] = (
    "books", "apparel", "kitchen", "glassware", "electronics", "toys",
    "cosmetics", "beverages", "tools", "home_decor", "sports", "stationery",
)  # fmt: skip
MATERIALS: tuple[str, ...] = (
    "paper", "textile", "plastic", "glass", "ceramic", "metal", "wood", "cardboard", "mixed",
)  # fmt: skip

PACKAGING_COST: dict[str, float] = {"own_container": 0.0, "bag": 0.12, "mailer": 0.35, "box": 1.10}
"""Material and handling cost of one package, in euros."""
DAMAGE_COST = 25.0
"""Cost of one item damaged in transit (refund, return shipping, goodwill), in euros."""

BASE_DATE = datetime(2026, 1, 5)
"""Monday of week 1 of the synthetic history."""
FEEDBACK_RATE = 0.05
"""Share of shipment labels later re-stated by customer feedback."""

_WEEK = timedelta(days=7)
_PRODUCTS_STREAM = 1
_LABELS_STREAM = 2
_CORRUPT_STREAM = 3
_DROP_STREAM = 4
_NOISE_STREAM = 5
_REWRITE_STREAM = 6


class _Archetype(NamedTuple):
    noun: str
    materials: dict[str, float]
    dims_cm: tuple[float, float, float]
    weight_kg: float
    fragility_adj: float = 0.0
    liquid_p: float = 0.0
    battery_p: float = 0.0
    boxed_p: float = 0.1
    set_p: float = 0.0
    share: float = 1.0


_A = _Archetype
_ARCHETYPES: dict[str, tuple[_Archetype, ...]] = {
    "books": (
        _A("paperback novel", {"paper": 1}, (20, 13, 2.5), 0.3, set_p=0.05),
        _A("hardcover cookbook", {"paper": 1}, (28, 22, 3), 1.2),
        _A("coffee table photo book", {"paper": 1}, (33, 28, 3.5), 2.0, boxed_p=0.2),
        _A("children's board book", {"paper": 0.5, "cardboard": 0.5}, (18, 18, 2), 0.4),
        _A("box set of classics", {"cardboard": 1}, (22, 16, 12), 2.5, boxed_p=0.9, share=0.6),
        _A("world atlas", {"paper": 1}, (38, 28, 3), 2.2, share=0.5),
    ),
    "apparel": (
        _A("t-shirt", {"textile": 1}, (30, 25, 2), 0.2, share=1.5),
        _A("hoodie", {"textile": 1}, (32, 28, 6), 0.6),
        _A("winter jacket", {"textile": 1}, (45, 35, 10), 1.2),
        _A("jeans", {"textile": 1}, (35, 28, 5), 0.7),
        _A("socks", {"textile": 1}, (20, 12, 3), 0.1),
        _A("leather boots", {"textile": 0.3, "mixed": 0.7}, (34, 24, 13), 1.4, boxed_p=0.7),
        _A("silk scarf", {"textile": 1}, (25, 18, 1.5), 0.1),
    ),
    "kitchen": (
        _A("coffee mug", {"ceramic": 0.7, "glass": 0.15, "metal": 0.15}, (12, 9, 10), 0.35, set_p=0.3),
        _A("dinner plate", {"ceramic": 0.8, "glass": 0.2}, (28, 28, 8), 2.5, set_p=0.8),
        _A("frying pan", {"metal": 1}, (48, 28, 7), 1.4, boxed_p=0.3),
        _A("cutting board", {"wood": 0.8, "plastic": 0.2}, (40, 28, 2), 1.0),
        _A("chef knife", {"metal": 1}, (33, 5, 2.5), 0.2, boxed_p=0.6),
        _A("stand mixer", {"metal": 0.5, "plastic": 0.5}, (38, 25, 35), 6.5, 0.25, boxed_p=0.9, share=0.5),
        _A("teapot", {"ceramic": 0.6, "glass": 0.2, "metal": 0.2}, (22, 15, 16), 0.9),
        _A("spatula", {"plastic": 0.5, "wood": 0.3, "metal": 0.2}, (30, 7, 2), 0.08),
    ),
    "glassware": (
        _A("wine glass", {"glass": 1}, (22, 9, 9), 0.2, set_p=0.6),
        _A("tumbler", {"glass": 1}, (12, 8, 8), 0.25, set_p=0.5),
        _A("flower vase", {"glass": 0.7, "ceramic": 0.3}, (30, 12, 12), 1.0),
        _A("carafe", {"glass": 1}, (28, 11, 11), 0.6),
        _A("mason jar", {"glass": 1}, (14, 9, 9), 0.4, set_p=0.5),
        _A("champagne flute", {"glass": 1}, (24, 7, 7), 0.15, set_p=0.7),
    ),
    "electronics": (
        _A("wireless headphones", {"plastic": 0.7, "mixed": 0.3}, (20, 18, 8), 0.3, 0.25, 0, 0.9, 0.8),
        _A("bluetooth speaker", {"plastic": 0.6, "metal": 0.2, "mixed": 0.2}, (18, 8, 8), 0.6, 0.2, 0, 0.95, 0.8),
        _A("phone charger", {"plastic": 1}, (10, 6, 3), 0.1, 0.05, 0, 0.1, 0.6),
        _A("tablet", {"mixed": 0.6, "metal": 0.4}, (25, 17, 1), 0.5, 0.45, 0, 1.0, 0.9),
        _A("computer monitor", {"mixed": 0.7, "plastic": 0.3}, (62, 40, 18), 5.0, 0.5, boxed_p=0.9, share=0.6),
        _A("55-inch television", {"mixed": 1}, (130, 80, 15), 17.0, 0.6, boxed_p=0.9, share=1.6),
        _A("soundbar", {"plastic": 0.6, "metal": 0.4}, (95, 10, 8), 3.0, 0.2, boxed_p=0.8, share=1.6),
        _A("mechanical keyboard", {"plastic": 0.6, "metal": 0.4}, (44, 14, 4), 0.9, 0.1, boxed_p=0.8),
    ),
    "toys": (
        _A("building blocks", {"plastic": 1}, (38, 26, 8), 1.0, boxed_p=0.9),
        _A("plush bear", {"textile": 1}, (30, 20, 15), 0.3),
        _A("jigsaw puzzle", {"cardboard": 1}, (35, 25, 5), 0.7, boxed_p=0.95),
        _A("remote control car", {"plastic": 1}, (35, 18, 12), 1.0, 0.15, 0, 0.9, 0.85),
        _A("wooden train set", {"wood": 1}, (40, 30, 8), 1.5, boxed_p=0.7),
        _A("porcelain doll", {"ceramic": 0.6, "mixed": 0.4}, (35, 15, 12), 0.6, 0.2),
        _A("kite", {"textile": 0.7, "plastic": 0.3}, (90, 60, 3), 0.3),
        _A("outdoor playhouse", {"plastic": 1}, (150, 120, 130), 30.0, share=1.6),
        _A("ride-on car", {"plastic": 1}, (110, 55, 50), 12.0, battery_p=0.8, share=1.6),
    ),
    "cosmetics": (
        _A("face cream", {"glass": 0.4, "plastic": 0.6}, (8, 8, 6), 0.15, 0.1, 0.9, boxed_p=0.7),
        _A("perfume", {"glass": 1}, (12, 8, 5), 0.25, 0.2, 1.0, boxed_p=0.9),
        _A("lipstick", {"plastic": 0.7, "metal": 0.3}, (8, 2, 2), 0.03),
        _A("shampoo", {"plastic": 1}, (20, 7, 5), 0.45, liquid_p=1.0),
        _A("nail polish", {"glass": 1}, (12, 10, 4), 0.2, liquid_p=1.0, set_p=0.5),
        _A("makeup brush", {"mixed": 0.5, "wood": 0.3, "plastic": 0.2}, (20, 10, 3), 0.15, set_p=0.5),
        _A("electric toothbrush", {"plastic": 1}, (25, 7, 7), 0.3, battery_p=1.0, boxed_p=0.8),
    ),
    "beverages": (
        _A("red wine", {"glass": 1}, (33, 8, 8), 1.3, 0.1, 1.0, boxed_p=0.2, set_p=0.2),
        _A("sparkling water case", {"plastic": 1}, (40, 27, 25), 9.5, liquid_p=1.0, boxed_p=0.6),
        _A("coffee beans", {"paper": 0.5, "plastic": 0.5}, (24, 12, 7), 1.0),
        _A("loose leaf green tea", {"cardboard": 0.5, "metal": 0.5}, (12, 8, 8), 0.15),
        _A("craft beer", {"glass": 0.6, "metal": 0.4}, (22, 13, 12), 1.5, liquid_p=1.0),
        _A("olive oil", {"glass": 0.7, "metal": 0.3}, (30, 7, 7), 1.0, liquid_p=1.0),
        _A("fruit juice", {"cardboard": 0.6, "plastic": 0.4}, (24, 9, 6), 1.05, liquid_p=1.0),
    ),
    "tools": (
        _A("screwdriver set", {"metal": 0.7, "mixed": 0.3}, (25, 15, 5), 0.8, boxed_p=0.7),
        _A("cordless drill", {"mixed": 0.6, "plastic": 0.4}, (30, 25, 9), 1.8, 0, 0, 0.95, 0.8),
        _A("claw hammer", {"metal": 0.6, "wood": 0.4}, (33, 13, 3), 0.7),
        _A("tape measure", {"plastic": 0.6, "metal": 0.4}, (8, 8, 4), 0.3),
        _A("steel toolbox", {"metal": 1}, (50, 22, 22), 4.5, boxed_p=0.5),
        _A("aluminium ladder", {"metal": 1}, (180, 45, 12), 9.0, share=1.6),
        _A("wheelbarrow", {"metal": 1}, (140, 65, 60), 16.0, share=1.6),
        _A("garden rake", {"metal": 0.5, "wood": 0.5}, (150, 40, 5), 1.5, share=1.6),
    ),
    "home_decor": (
        _A("picture frame", {"wood": 0.5, "glass": 0.2, "metal": 0.3}, (30, 25, 3), 0.6, 0.3),
        _A("scented candle", {"glass": 0.6, "metal": 0.2, "mixed": 0.2}, (10, 9, 9), 0.4),
        _A("cushion cover", {"textile": 1}, (45, 45, 1.5), 0.2, set_p=0.3),
        _A("wall clock", {"mixed": 0.4, "wood": 0.3, "glass": 0.3}, (35, 35, 5), 1.0, 0.2, 0, 0.8),
        _A("table lamp", {"ceramic": 0.4, "metal": 0.4, "glass": 0.2}, (45, 25, 25), 2.2, 0.2),
        _A("rolled area rug", {"textile": 1}, (160, 30, 30), 7.0, share=1.6),
        _A("floor mirror", {"glass": 1}, (150, 50, 5), 12.0, 0.1, share=1.6),
        _A("armchair", {"textile": 0.5, "wood": 0.5}, (90, 80, 85), 20.0, share=1.6),
        _A("floor lamp", {"metal": 0.7, "wood": 0.3}, (160, 35, 35), 5.0, 0.2, share=1.6),
        _A("curtain rod", {"metal": 1}, (160, 4, 4), 1.2, share=1.6),
    ),
    "sports": (
        _A("yoga mat", {"plastic": 0.5, "textile": 0.5}, (62, 15, 15), 1.2),
        _A("dumbbell", {"metal": 1}, (30, 12, 12), 7.0),
        _A("tennis racket", {"mixed": 0.5, "metal": 0.5}, (69, 27, 4), 0.3, 0.1),
        _A("football", {"plastic": 0.5, "textile": 0.5}, (23, 23, 23), 0.45),
        _A("cycling gloves", {"textile": 1}, (22, 12, 3), 0.1),
        _A("insulated water bottle", {"metal": 0.6, "plastic": 0.4}, (26, 8, 8), 0.35),
        _A("road bicycle", {"metal": 1}, (170, 25, 95), 9.0, share=1.6),
        _A("treadmill", {"metal": 1}, (180, 80, 30), 60.0, battery_p=0.1, share=1.6),
        _A("snowboard", {"wood": 0.5, "mixed": 0.5}, (155, 28, 10), 3.5, share=1.6),
        _A("hockey stick", {"wood": 0.6, "mixed": 0.4}, (150, 8, 4), 0.6, share=1.6),
    ),
    "stationery": (
        _A("spiral notebook", {"paper": 1}, (21, 15, 1.5), 0.25, set_p=0.2),
        _A("gel pen", {"plastic": 1}, (16, 8, 2), 0.1, set_p=0.6),
        _A("envelope pack", {"paper": 1}, (23, 12, 2), 0.3),
        _A("sticky notes", {"paper": 1}, (8, 8, 4), 0.1),
        _A("desk organizer", {"wood": 0.4, "plastic": 0.3, "metal": 0.3}, (30, 20, 12), 0.8),
        _A("fountain pen", {"metal": 0.6, "plastic": 0.4}, (14, 3, 3), 0.05, 0.1, boxed_p=0.8),
        _A("art print", {"paper": 1}, (42, 30, 0.5), 0.15),
    ),
}
del _A

_CATEGORY_SHARE: dict[str, float] = {
    "books": 0.10, "apparel": 0.14, "kitchen": 0.10, "glassware": 0.06, "electronics": 0.10,
    "toys": 0.08, "cosmetics": 0.08, "beverages": 0.05, "tools": 0.07, "home_decor": 0.08,
    "sports": 0.07, "stationery": 0.07,
}  # fmt: skip
_CATEGORY_PRICE: dict[str, float] = {
    "books": 14, "apparel": 25, "kitchen": 22, "glassware": 18, "electronics": 90, "toys": 25,
    "cosmetics": 18, "beverages": 12, "tools": 35, "home_decor": 30, "sports": 30, "stationery": 8,
}  # fmt: skip
_MATERIAL_FRAGILITY: dict[str, float] = {
    "paper": 0.1, "textile": 0.03, "plastic": 0.2, "glass": 0.8, "ceramic": 0.7,
    "metal": 0.08, "wood": 0.15, "cardboard": 0.1, "mixed": 0.35,
}  # fmt: skip
_MATERIAL_WORDS: dict[str, tuple[str, ...]] = {
    "paper": ("", "", "recycled paper"),
    "textile": ("cotton", "linen", "wool", "polyester", "fleece"),
    "plastic": ("plastic", "BPA-free", "recycled plastic"),
    "glass": ("glass", "crystal", "borosilicate glass"),
    "ceramic": ("ceramic", "porcelain", "stoneware"),
    "metal": ("stainless steel", "aluminium", "cast iron", "brass"),
    "wood": ("oak", "bamboo", "walnut", "pine"),
    "cardboard": ("cardboard", "kraft"),
    "mixed": ("", ""),
}
_NOUN_NAMES_MATERIAL = re.compile(r"\b(?:steel|aluminium|wooden|leather|silk|porcelain|glass|paper)\b")
_ADJECTIVES = ("", "", "Classic", "Premium", "Handmade", "Everyday", "Vintage", "Modern", "Compact", "Deluxe")
_FRAGILE_ADJECTIVES = ("Delicate", "Hand-blown", "Fragile", "Fine")
_BOXED_PHRASES = ("in gift box", "boxed", "in retail box")
_SET_SIZES = (2, 4, 6)


# -- products --------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _type_key(package_type: str) -> int:
    return zlib.crc32(package_type.encode())


def _product_id(index: int) -> str:
    return f"P{index:07d}"


def _pick(cumulative: list[float], u: float) -> int:
    """Index drawn from cumulative weights with one uniform number."""
    return min(bisect_right(cumulative, u * cumulative[-1]), len(cumulative) - 1)


# Products drawn between two calls of a progress callback.
PROGRESS_EVERY = 50_000


def _draw_products(
    rng: np.random.Generator, n: int, first_index: int, on_progress: Callable[[int, int], None] | None = None
) -> pd.DataFrame:
    """Draws `n` products without `added_at`; ids start at `first_index`; `on_progress(done, n)` now and then."""
    cats = list(_CATEGORY_SHARE)
    cat_p = np.array([_CATEGORY_SHARE[c] for c in cats])
    cat_idx = rng.choice(len(cats), size=n, p=cat_p / cat_p.sum())
    u_arch, u_mat = rng.random(n), rng.random(n)
    dim_noise = rng.lognormal(0.0, 0.2, size=(n, 3))
    weight_noise = rng.lognormal(0.0, 0.15, size=n)
    fragility_noise = rng.normal(0.0, 0.08, size=n)
    price_noise = rng.lognormal(0.0, 0.5, size=n)
    u_liquid, u_battery, u_boxed, u_set = (rng.random(n) for _ in range(4))
    word_picks = rng.integers(0, 1 << 30, size=(n, 4))
    arch_cum = {c: list(accumulate(a.share for a in archs)) for c, archs in _ARCHETYPES.items()}
    material_cum = {a.noun: list(accumulate(a.materials.values())) for archs in _ARCHETYPES.values() for a in archs}

    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "product_id", "title", "category", "material", "length_cm", "width_cm", "height_cm",
            "weight_kg", "fragility", "price", "is_liquid", "has_battery",
        )
    }  # fmt: skip
    for i in range(n):
        if on_progress is not None and i % PROGRESS_EVERY == 0:
            on_progress(i, n)
        category = cats[cat_idx[i]]
        archetypes = _ARCHETYPES[category]
        arch = archetypes[_pick(arch_cum[category], u_arch[i])]
        material = list(arch.materials)[_pick(material_cum[arch.noun], u_mat[i])]
        dims = sorted((d * s for d, s in zip(arch.dims_cm, dim_noise[i], strict=True)), reverse=True)
        size_ratio = (dims[0] * dims[1] * dims[2]) / (arch.dims_cm[0] * arch.dims_cm[1] * arch.dims_cm[2])
        weight = arch.weight_kg * size_ratio ** (2 / 3) * weight_noise[i]
        fragility = float(np.clip(_MATERIAL_FRAGILITY[material] + arch.fragility_adj + fragility_noise[i], 0.0, 1.0))
        liquid = bool(u_liquid[i] < arch.liquid_p)
        battery = bool(u_battery[i] < arch.battery_p)
        boxed = bool(u_boxed[i] < arch.boxed_p)
        is_set = bool(u_set[i] < arch.set_p)
        title = _title(arch, material, fragility, liquid, battery, boxed, is_set, dims, word_picks[i])
        price = _CATEGORY_PRICE[category] * (weight + 0.5) ** 0.3 * price_noise[i] * (1.5 if boxed else 1.0)
        rows["product_id"].append(_product_id(first_index + i))
        rows["title"].append(title)
        rows["category"].append(category)
        rows["material"].append(material)
        rows["length_cm"].append(round(dims[0], 1))
        rows["width_cm"].append(round(dims[1], 1))
        rows["height_cm"].append(round(max(dims[2], 0.2), 1))
        rows["weight_kg"].append(round(max(weight, 0.01), 3))
        rows["fragility"].append(round(fragility, 3))
        rows["price"].append(round(price, 2))
        rows["is_liquid"].append(liquid)
        rows["has_battery"].append(battery)
    if on_progress is not None:
        on_progress(n, n)
    return pd.DataFrame(rows)


def _title(
    arch: _Archetype,
    material: str,
    fragility: float,
    liquid: bool,
    battery: bool,
    boxed: bool,
    is_set: bool,
    dims: list[float],
    picks: np.ndarray,
) -> str:
    if fragility > 0.7 and picks[0] % 2 == 0:
        adjective = _FRAGILE_ADJECTIVES[picks[0] // 2 % len(_FRAGILE_ADJECTIVES)]
    else:
        adjective = _ADJECTIVES[picks[0] % len(_ADJECTIVES)]
    words = _MATERIAL_WORDS[material]
    material_word = words[picks[1] % len(words)]
    if _NOUN_NAMES_MATERIAL.search(arch.noun):
        material_word = ""
    parts = [adjective, material_word]
    if battery and "wireless" not in arch.noun:
        parts.append(("rechargeable", "battery-powered", "wireless")[picks[2] % 3])
    parts.append(arch.noun)
    text = " ".join(p for p in parts if p)
    text = text[0].upper() + text[1:]
    extras: list[str] = []
    if is_set:
        extras.append(f"set of {_SET_SIZES[picks[3] % len(_SET_SIZES)]}")
    if liquid:
        ml = max(30, round(dims[0] * dims[1] * dims[2] * 0.55 / 10) * 10)
        extras.append(f"{ml / 1000:g}L" if ml >= 1000 else f"{ml}ml")
    elif picks[3] % 3 == 0:
        extras.append(f"{dims[0]:.0f} cm")
    if boxed:
        extras.append(_BOXED_PHRASES[picks[2] % len(_BOXED_PHRASES)])
    return ", ".join([text, *extras]) if extras else text


def generate_products(
    n: int, seed: int, first_index: int = 1, weeks: int = 1, on_progress: Callable[[int, int], None] | None = None
) -> pd.DataFrame:
    """Draws a catalogue of `n` products introduced evenly over `weeks` weeks.

    Args:
        n: Number of products.
        seed: Seed of every draw.
        first_index: Numeric part of the first product id (`P0000001` for 1).
        weeks: Products of week w have `added_at` inside week w, starting at `BASE_DATE`.
        on_progress: Called with (products drawn, n) every `PROGRESS_EVERY` products and at the end.

    Returns:
        The products table, in id order, with the warehouse's column names.
    """
    rng = _rng(seed, _PRODUCTS_STREAM, first_index)
    products = _draw_products(rng, n, first_index, on_progress)
    intro_week = 1 + (np.arange(n) * weeks) // max(n, 1)
    # Offsets sorted inside each week keep ids increasing with time, as a real catalogue's do.
    offsets = rng.random(n)
    offsets = offsets[np.lexsort((offsets, intro_week))]
    seconds = ((intro_week - 1) + offsets) * _WEEK.total_seconds()
    products["added_at"] = (pd.Timestamp(BASE_DATE) + pd.to_timedelta(np.round(seconds), "s")).as_unit("us")
    return products

