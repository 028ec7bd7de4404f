"""split_snapshot / read_split: by product, stratified, deterministic, atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packwise.errors import ConfigError, DataValidationError
from packwise.split import SplitSummary, label_column, read_split, split_snapshot

TYPES = ["own_container", "bag", "mailer", "box"]
N = 4000


def make_snapshot(directory: Path, n: int = N, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Products with correlated labels (a sturdier item suits more types) and ~25% missing labels."""
    rng = np.random.default_rng(seed)
    products = pd.DataFrame(
        {
            "product_id": [f"sku-{i:05d}" for i in range(n)],
            "title": [f"thing {i}" for i in range(n)],
            "category": rng.choice(["toys", "books", "glassware"], n),
            "weight_kg": rng.uniform(0.1, 5, n),
            "fragility": rng.uniform(0, 1, n),
            "is_liquid": rng.random(n) < 0.2,
            "added_at": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        }
    )
    sturdiness = rng.random(n)
    rows = []
    for j, package_type in enumerate(TYPES):
        # own_container is rarely suitable, box almost always.
        positive = sturdiness + rng.normal(0, 0.15, n) > 0.85 - 0.25 * j
        has_label = rng.random(n) < 0.75
        for i in np.flatnonzero(has_label):
            rows.append((products["product_id"].iat[i], package_type, int(positive[i])))
    labels = pd.DataFrame(rows, columns=["product_id", "package_type", "label"]).astype({"label": "int8"})
    write(directory, products, labels)
    return products, labels


def write(directory: Path, products: pd.DataFrame, labels: pd.DataFrame) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(products, preserve_index=False), directory / "products.parquet")
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), directory / "labels.parquet")


def run(snap: Path, out: Path, ratio: float = 0.8, seed: int = 42) -> tuple[SplitSummary, Path, Path]:
    train, val = out / "train.parquet", out / "validation.parquet"
    summary = split_snapshot(snap, train, val, ratio, seed, TYPES)
    return summary, train, val


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    snap = tmp_path_factory.mktemp("snap")
    products, labels = make_snapshot(snap)
    return snap, products, labels


def test_split_by_product_with_ratio_and_all_labels(
    big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    snap, products, labels = big
    summary, train_path, val_path = run(snap, tmp_path)
    train, val = pd.read_parquet(train_path), pd.read_parquet(val_path)

    labelled = set(labels["product_id"])
    assert set(train["product_id"]).isdisjoint(val["product_id"])
    assert set(train["product_id"]) | set(val["product_id"]) == labelled
    assert train["product_id"].is_unique and val["product_id"].is_unique
    assert summary.n_train == len(train)
    assert len(train) / len(labelled) == pytest.approx(0.8, abs=0.02)
    assert summary.n_validation == len(val) == len(labelled) - len(train)

    # Every product column kept with its type, plus one nullable int8 label column per type.
    assert list(train.columns) == [*products.columns, *(label_column(t) for t in TYPES)]
    schema = pq.read_schema(train_path)
    source = pq.read_schema(snap / "products.parquet")
    assert all(schema.field(name).type == source.field(name).type for name in source.names)
    for t in TYPES:
        assert schema.field(label_column(t)).type == pa.int8()

    # Labels round-trip exactly, missing ones as null.
    both = pd.concat([train, val]).set_index("product_id")
    for t in TYPES:
        expected = labels[labels["package_type"] == t].set_index("product_id")["label"]
        got = both[label_column(t)]
        assert got.notna().sum() == len(expected)
        assert (got.loc[expected.index].astype(int) == expected.astype(int)).all()
    # Product attributes travel with their product.
    merged = both.join(products.set_index("product_id"), rsuffix="_src")
    assert np.allclose(merged["weight_kg"], merged["weight_kg_src"])


def test_balanced_per_type(big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    snap, _, labels = big
    summary, _, _ = run(snap, tmp_path, ratio=0.75, seed=3)
    for t in TYPES:
        overall = labels.loc[labels["package_type"] == t, "label"].mean()
        tr, va = summary.train[t], summary.validation[t]
        # uniform hashing: ~1000 validation labels per type sit within about 3 sd of the overall rate
        assert abs(tr.positive_rate - overall) < 0.03
        assert abs(va.positive_rate - overall) < 0.045
        # Label counts per type follow the ratio too.
        assert tr.n_labels / (tr.n_labels + va.n_labels) == pytest.approx(0.75, abs=0.02)
    rates = [summary.train[t].positive_rate for t in TYPES]
    assert rates == sorted(rates)  # the fixture really has different rates per type


def test_deterministic_and_independent_of_row_order(
    big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    snap, products, labels = big
    _, train_a, val_a = run(snap, tmp_path / "a")
    _, train_b, _ = run(snap, tmp_path / "b")
    assert pd.read_parquet(train_a).equals(pd.read_parquet(train_b))

    shuffled = tmp_path / "shuffled"
    write(
        shuffled,
        products.sample(frac=1, random_state=7).reset_index(drop=True),
        labels.sample(frac=1, random_state=8).reset_index(drop=True),
    )
    _, train_c, val_c = run(shuffled, tmp_path / "c")
    assert set(pd.read_parquet(train_c)["product_id"]) == set(pd.read_parquet(train_a)["product_id"])
    assert set(pd.read_parquet(val_c)["product_id"]) == set(pd.read_parquet(val_a)["product_id"])

    _, train_d, _ = run(snap, tmp_path / "d", seed=43)
    assert set(pd.read_parquet(train_d)["product_id"]) != set(pd.read_parquet(train_a)["product_id"])


def test_summary_is_json_serialisable(big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    summary, _, _ = run(big[0], tmp_path)
    payload = json.loads(json.dumps(summary.model_dump(mode="json")))
    assert payload["n_train"] == summary.n_train
    assert set(payload["package_types"]) == set(TYPES)
    assert payload["package_types"]["box"]["validation"]["n_labels"] == summary.validation["box"].n_labels
    assert summary.n_strata >= 2


def test_read_split(big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    snap, _, labels = big
    _, train_path, _ = run(snap, tmp_path)
    frame, y = read_split(train_path, "mailer")
    train = pd.read_parquet(train_path)
    expected = train[train[label_column("mailer")].notna()]
    assert len(frame) == len(y) == len(expected)
    assert y.dtype == np.int8
    assert not any(c.startswith("label__") for c in frame.columns)
    assert list(frame.index) == list(range(len(frame)))
    truth = labels[labels["package_type"] == "mailer"].set_index("product_id")["label"]
    assert (truth.loc[frame["product_id"]].to_numpy() == y).all()


def test_read_split_unknown_type(big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    _, train_path, _ = run(big[0], tmp_path)
    with pytest.raises(DataValidationError, match=r"no labels for package type 'crate' .*package_types"):
        read_split(train_path, "crate")


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_bad_ratio(big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path, ratio: float) -> None:
    with pytest.raises(ConfigError, match=r"split\.train_ratio"):
        run(big[0], tmp_path, ratio=ratio)
    assert not list(tmp_path.iterdir())


def test_small_snapshot_products_without_labels_and_unconfigured_types(tmp_path: Path) -> None:
    products, labels = make_snapshot(tmp_path / "snap", n=300, seed=5)
    extra_products = pd.concat(
        [products, products.iloc[:2].assign(product_id=["unlabelled-1", "unlabelled-2"])], ignore_index=True
    )
    extra_labels = pd.concat(
        [labels, pd.DataFrame({"product_id": ["unlabelled-1"], "package_type": ["crate"], "label": [1]})],
        ignore_index=True,
    ).astype({"label": "int8"})
    write(tmp_path / "snap", extra_products, extra_labels)
    summary, train, val = run(tmp_path / "snap", tmp_path / "out", ratio=0.7)
    ids = set(pd.read_parquet(train)["product_id"]) | set(pd.read_parquet(val)["product_id"])
    assert ids == set(labels["product_id"])
    assert summary.n_train / len(ids) == pytest.approx(0.7, abs=0.08)


def test_missing_class_in_a_split_writes_nothing(tmp_path: Path) -> None:
    products, labels = make_snapshot(tmp_path / "snap", n=400, seed=1)
    box = labels["package_type"] == "box"
    labels.loc[box, "label"] = 0
    labels.loc[labels.index[box][0], "label"] = 1  # one positive box label: one split has none
    write(tmp_path / "snap", products, labels)
    out = tmp_path / "out"
    with pytest.raises(DataValidationError) as info:
        run(tmp_path / "snap", out)
    msg = str(info.value)
    assert "'box' has no positive labels in the" in msg
    assert "split.train_ratio or add positive labels" in msg
    assert ("validation split" in msg and "lower" in msg) or ("training split" in msg and "raise" in msg)
    assert not out.exists() or not list(out.iterdir())


def test_bad_labels_are_rejected(tmp_path: Path) -> None:
    products, labels = make_snapshot(tmp_path / "snap", n=200)
    labels = pd.concat([labels, labels.iloc[[0]]], ignore_index=True)
    write(tmp_path / "snap", products, labels)
    with pytest.raises(DataValidationError, match=r"duplicate \(product_id, package_type\)"):
        run(tmp_path / "snap", tmp_path / "out")


def test_overwrites_atomically_and_leaves_no_temp_files(
    big: tuple[Path, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    (tmp_path / "train.parquet").write_text("stale")
    run(big[0], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.parquet", "validation.parquet"]
    assert pq.read_schema(tmp_path / "train.parquet").names[0] == "product_id"


def test_rare_patterns_are_pooled(tmp_path: Path) -> None:
    # 200 products share one pattern; 6 products each have a unique pattern: they are pooled, not lost.
    products, _ = make_snapshot(tmp_path / "snap", n=206)
    ids = products["product_id"].tolist()
    rows = [(pid, t, (i + j) % 2) for i, pid in enumerate(ids[:200]) for j, t in enumerate(TYPES)]
    rows += [(pid, TYPES[k % 4], 1) for k, pid in enumerate(ids[200:])]
    labels = pd.DataFrame(rows, columns=["product_id", "package_type", "label"]).astype({"label": "int8"})
    write(tmp_path / "snap", products, labels)
    summary, train, val = run(tmp_path / "snap", tmp_path / "out", ratio=0.5)
    assert summary.n_pooled == 6
    assert summary.n_train + summary.n_validation == 206
    written = set(pd.read_parquet(train)["product_id"]) | set(pd.read_parquet(val)["product_id"])
    assert set(ids[200:]) <= written


def test_a_product_keeps_its_side_as_labels_grow(tmp_path: Path) -> None:
    """Last week's training products never become this week's validation products.

    Otherwise the champion would be scored on products it was trained on and the gate would favour it.
    """
    products, labels = make_snapshot(tmp_path / "week1", n=3000, seed=9)
    week1 = labels.sample(frac=0.4, random_state=1)
    write(tmp_path / "week1", products, week1)
    _, train1, val1 = run(tmp_path / "week1", tmp_path / "out1")
    write(tmp_path / "week2", products, labels)  # more labels per product: label patterns change
    _, train2, val2 = run(tmp_path / "week2", tmp_path / "out2")
    t1, v1 = set(pd.read_parquet(train1)["product_id"]), set(pd.read_parquet(val1)["product_id"])
    t2, v2 = set(pd.read_parquet(train2)["product_id"]), set(pd.read_parquet(val2)["product_id"])
    assert t1 <= t2 and v1 <= v2
    assert not (t1 & v2) and not (v1 & t2)
