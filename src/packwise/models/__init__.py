"""Model types are plugins chosen by `model.type` in the configuration.

Adding a type is one module implementing `ModelType` (see `base.py`) and one line in `_BUILTIN` (or an
entry point in the `packwise.model_types` group for a type shipped in another distribution). A type
with stacked columns (a fitted model computing booster inputs) also names their loader in `_STACKED`
(or the `packwise.stacked_columns` group). Nothing here imports xgboost: the tables name modules, which
load only when a type is used.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from packwise.errors import ConfigError

if TYPE_CHECKING:
    from packwise.features import StackedColumns
    from packwise.models.base import ModelType

_BUILTIN: dict[str, str] = {
    "xgboost": "packwise.models.xgboost_tabular:XGBoostTabular",
    "xgboost_text": "packwise.models.xgboost_text:XGBoostText",
    "stacked_text": "packwise.models.stacked_text:StackedText",
}

# kind of stacked columns -> a callable(bytes) returning `packwise.features.StackedColumns`. A fixed table:
# the kind read from a model file never names an arbitrary module to import.
_STACKED: dict[str, str] = {
    "linear_text": "packwise.models.stacked_text:LinearTextModel.from_bytes",
}


@functools.cache  # scanning every installed distribution's entry points took 10 ms a call
def _table() -> dict[str, str]:
    table = dict(_BUILTIN)
    for ep in entry_points(group="packwise.model_types"):
        table.setdefault(ep.name, ep.value)
    return table


@functools.cache
def _stacked_table() -> dict[str, str]:
    table = dict(_STACKED)
    for ep in entry_points(group="packwise.stacked_columns"):
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


def load_stacked_columns(kind: str, data: bytes) -> StackedColumns:
    """The stacked columns model of `kind` saved as `data` (a model file's `packwise-stacked.json`)."""
    target = _stacked_table().get(kind)
    if target is None:
        from packwise.errors import PackwiseError

        raise PackwiseError(
            f"model file: stacked columns of unknown kind {kind!r}; install the package that provides it "
            f"(known: {', '.join(sorted(_stacked_table()))})"
        )
    module_name, _, attr = target.partition(":")
    loader: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        loader = getattr(loader, part)
    stacked: StackedColumns = loader(data)
    return stacked
