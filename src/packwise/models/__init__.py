"""Model types are plugins chosen by `model.type` in the configuration.

Adding a type is one module implementing `ModelType` (see `base.py`) and one line in `_BUILTIN` (or an
entry point in the `packwise.model_types` group for a type shipped in another distribution). Nothing
here imports xgboost: the table names modules, which load only when a type is used.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from packwise.errors import ConfigError

if TYPE_CHECKING:
    from packwise.models.base import ModelType

_BUILTIN: dict[str, str] = {
    "xgboost": "packwise.models.xgboost_tabular:XGBoostTabular",
    "xgboost_text": "packwise.models.xgboost_text:XGBoostText",
}


@functools.cache  # scanning every installed distribution's entry points took 10 ms a call
def _table() -> dict[str, str]:
    table = dict(_BUILTIN)
    for ep in entry_points(group="packwise.model_types"):
        table.setdefault(ep.name, ep.value)
    return table


def known_model_types() -> list[str]:
    return sorted(_table())


def check_model_type(name: str, key: str = "model.type") -> None:
    """Raises a one-line ConfigError naming the known types unless `name` is registered; loads no plugin.

    The configuration does not know this table (plugins register without it): the app layer calls this
    right after loading a configuration, and `get_model_type` when a type is used.

    Args:
        name: The configured model type.
        key: Where it was set, the start of the message (e.g. `packwise.yaml: model.type`).
    """
    if name not in _table():
        raise ConfigError(f"{key}: unknown model type {name!r}; known: {', '.join(known_model_types())}")


def get_model_type(name: str) -> ModelType:
    """The plugin instance registered under `name`."""
    check_model_type(name)
    module_name, _, attr = _table()[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    instance: ModelType = cls()
    return instance
