"""The configuration as the app layer loads it: `packwise.config`'s validation plus the plugin checks.

`packwise.config` validates every setting but does not know which plugins are installed (the plugin
tables import nothing from it the other way round either). Every entry point (the CLI, the trigger
watcher, the Lambda handler) loads through here, so an unknown `model.type` is a one-line ConfigError
naming the known types before anything runs.
"""

from __future__ import annotations

from pathlib import Path

from packwise import config as packwise_config
from packwise.config import PackwiseConfig
from packwise.models import check_model_type


def check_plugins(config: PackwiseConfig, source: str) -> None:
    """ConfigError naming the known choices when `config` names a plugin that is not installed.

    Args:
        config: A validated configuration.
        source: Where it came from, the start of the message (a file name, `embedded defaults`, ...).
    """
    check_model_type(config.model.type, f"{source}: model.type")


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> PackwiseConfig:
    """The YAML file (or the embedded defaults when `path` is None) with overrides, plugins checked."""
    config = packwise_config.load_config(path, overrides)
    source = "embedded defaults" if path is None else str(path)
    check_plugins(config, f"{source} with --set" if overrides else source)
    return config
