"""Gate bounds in range and upper bounds on knobs that size memory or time (issue 12)."""

from __future__ import annotations

import pytest

from packwise.config import load_config
from packwise.errors import ConfigError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gate.min_auc.reject=1.5", r"gate: gate\.min_auc\.reject 1\.5 is out of range; it must be between 0 and 1"),
        ("gate.min_pr_auc.reject=-0.1", r"gate\.min_pr_auc\.reject -0\.1 is out of range"),
        ("gate.auc_drop_abs.review=-0.01", r"gate\.auc_drop_abs\.review -0\.01 is out of range"),
        (
            "gate.log_loss_increase_rel.reject=-1",
            r"gate\.log_loss_increase_rel\.reject -1\.0 is out of range; it must be 0 or more",
        ),
        ("gate.label_churn.reject=2", r"gate\.label_churn\.reject 2\.0 is out of range"),
    ],
)
def test_a_gate_bound_out_of_range_is_one_line_naming_it(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


def test_bounds_at_the_edges_of_their_range_are_accepted() -> None:
    cfg = load_config(None, ["gate.min_auc.reject=1.0", "gate.auc_drop_abs.review=0", "gate.auc_drop_abs.reject=0"])
    assert cfg.gate.min_auc.reject == 1.0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("inference.shard_target_rows=1", "inference.shard_target_rows"),
        ("model.num_boost_round=100000", "model.num_boost_round"),
        ("features.max_categories=1000000000", "features.max_categories"),
        ("inference.batch_rows=4194304", "inference.batch_rows"),
    ],
)
def test_a_knob_past_its_bound_is_refused(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^embedded defaults with --set: {key}: Input should be") as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


def test_a_scoring_batch_over_one_gib_is_refused_with_the_batch_size_that_fits() -> None:
    # 2 categorical columns x 10,000 values + 12 other columns: 131,072 rows x 20,012 x 4 bytes = 9.8 GiB
    with pytest.raises(ConfigError, match=r"9\.8 GiB, over the 1 GiB .*lower inference\.batch_rows to 13413"):
        load_config(None, ["features.max_categories=10000"])
    cfg = load_config(None, ["features.max_categories=10000", "inference.batch_rows=13413"])
    assert cfg.inference.batch_rows * cfg.features.dense_width() * 4 <= 1 << 30


def test_an_unparsable_set_value_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^--set split\.seed: value '\[1,' is not valid YAML") as err:
        load_config(None, ["split.seed=[1,"])
    assert "\n" not in str(err.value)
