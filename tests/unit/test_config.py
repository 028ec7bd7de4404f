"""The config package: one import path, Kubernetes quantities, errors that name the entry to fix."""

from __future__ import annotations

import pytest

import packwise.config as config_pkg
from packwise.config import PackwiseConfig, TaskResources, parse_config
from packwise.errors import ConfigError


def test_every_public_name_is_importable_from_the_package() -> None:
    for name in config_pkg.__all__:
        assert getattr(config_pkg, name) is not None, name
    assert config_pkg.PackwiseConfig().cluster.resources_for("train").threads == 2


@pytest.mark.parametrize(
    ("limit", "threads"), [("2", 2), ("1", 1), ("1500m", 1), ("2500m", 2), ("500m", 1), ("4.5", 4), ("1.5m", 1)]
)
def test_threads_are_the_whole_cores_of_the_cpu_limit(limit: str, threads: int) -> None:
    assert TaskResources(cpu_limit=limit).threads == threads


@pytest.mark.parametrize("quantity", ["500m", "2", "0.5", "512Mi", "4Gi", "1G", "1e3", "1.5m"])
def test_kubernetes_quantities_are_accepted(quantity: str) -> None:
    assert TaskResources(memory_limit=quantity).memory_limit == quantity


@pytest.mark.parametrize("quantity", ["abc", "2 Gi", "4GB", "-1", "NaN", "inf", "1_000", ""])
def test_a_bad_quantity_is_one_line_naming_the_key(quantity: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"cluster": {"resources": {"default": {"memory_limit": quantity}}}}, "packwise.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("packwise.yaml: cluster.resources.default.memory_limit: ")
    assert repr(quantity) in message


def test_a_bad_list_entry_is_named_by_its_index() -> None:
    with pytest.raises(ConfigError, match=r"^f: package_types\.1\.threshold: Input should be less than 1"):
        parse_config({"package_types": [{"name": "box"}, {"name": "bag", "threshold": 2}]}, "f")


def test_an_unknown_key_names_its_dotted_path() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'cluster\.retries\.num_retry'"):
        parse_config({"cluster": {"retries": {"num_retry": 3}}}, "f")


def test_a_pipeline_parameter_round_trips() -> None:
    config = PackwiseConfig()
    assert config_pkg.config_from_json(config.model_dump_json()) == config


@pytest.mark.parametrize("root", ["/srv/packwise", "s3://acme-ml/packwise/storage"])
def test_the_config_round_trips_through_json_with_its_kind_of_storage_root(root: str) -> None:
    """Pipelines carry config sections as JSON: a local root comes back a path, an s3:// root a URI."""
    config = parse_config({"storage": {"root": root}}).resolved()
    again = PackwiseConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.storage.is_object_store is root.startswith("s3://")
