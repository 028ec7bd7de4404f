"""Trigger files: what one says and how it is checked, before the watcher (`packwise_app.trigger`) acts on it.

A trigger file (YAML or JSON) names the pipeline, its run parameters and overrides of the cluster's
configuration, validated by the same `PackwiseConfig` model as everything else:

    pipeline: training            # or inference
    params: {week: 5}             # inference: {mode: daily|monthly, pinned_models: {bag: 3}}
    config:                       # optional overrides of the cluster's packwise.yaml
      model: {type: xgboost_text}
    run_name: retrain-text-model  # optional

The file is read with bounds (size, nesting depth); only `config.model` may be overridden, and only within
`cluster.trigger`'s bounds. Anything unfit is a one-line `TriggerError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from packwise.config import PackwiseConfig, parse_config
from packwise.errors import ConfigError, PackwiseError
from packwise_app.configuration import check_plugins

MAX_TRIGGER_BYTES = 256 * 1024
MAX_TRIGGER_DEPTH = 20  # nesting of mappings and lists; a real trigger file needs 4
# The one section a trigger file may override: the model (type and hyperparameters, within the bounds of
# cluster.trigger). Whoever can write to the bucket must not change what reaches production (the gate,
# the thresholds and package types, the features' trust settings, the split the gate is measured on),
# who the run's pods are, where they write, which SQL runs, or what the runs cost (compute, inference).
OVERRIDABLE_SECTIONS = frozenset({"model"})


class TriggerError(PackwiseError):
    """A trigger file that cannot start a run; the message is written next to it."""


class TriggerFile(BaseModel):
    """The schema of a trigger file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: Literal["training", "inference"] = Field(description="Which pipeline to run.")
    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters (week; mode, pinned_models).")
    config: dict[str, Any] = Field(default_factory=dict, description="Overrides of the cluster's configuration.")
    run_name: str | None = Field(None, max_length=100, description="Run name; default derived from the file.")


@dataclass(frozen=True)
class RunRequest:
    """A validated trigger file: what to start."""

    pipeline: str
    params: dict[str, Any]
    config: PackwiseConfig
    run_name: str | None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _forbidden_keys(overrides: dict[str, Any]) -> str | None:
    for section, value in overrides.items():
        if section not in OVERRIDABLE_SECTIONS:
            return f"config.{section}"
        if isinstance(value, dict):
            for key in value:
                if key.endswith("_query"):
                    return f"config.{section}.{key}"
    return None


class _UnboundedYamlError(Exception):
    """A trigger file nested too deeply or using aliases; refused before it is built."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing nesting deeper than MAX_TRIGGER_DEPTH and aliases.

    20,000 nested lists in 40 KB made the recursive composer raise RecursionError; an alias bomb expands
    exponentially once validated. Neither has a use in a trigger file.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _UnboundedYamlError("anchors and aliases (*name) are not allowed in a trigger file")
        self._depth += 1
        try:
            if self._depth > MAX_TRIGGER_DEPTH:
                raise _UnboundedYamlError(f"nested deeper than {MAX_TRIGGER_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _load_bounded(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _check_model_bounds(override: dict[str, Any], config: PackwiseConfig, source: str) -> None:
    """The trigger's `config.model` within the operator's bounds (cluster.trigger); TriggerError if not."""
    bounds = config.cluster.trigger
    model = config.model
    if bounds.model_types is not None and "type" in override and model.type not in bounds.model_types:
        allowed = ", ".join(bounds.model_types)
        raise TriggerError(f"{source}: config.model.type {model.type!r} is not allowed for triggers ({allowed})")
    if "num_boost_round" in override and model.num_boost_round > bounds.max_num_boost_round:
        raise TriggerError(
            f"{source}: config.model.num_boost_round {model.num_boost_round} is above the trigger bound "
            f"{bounds.max_num_boost_round} (cluster.trigger.max_num_boost_round)"
        )
    if "text_hash_features" in override and model.text_hash_features > bounds.max_text_hash_features:
        raise TriggerError(
            f"{source}: config.model.text_hash_features {model.text_hash_features} is above the trigger bound "
            f"{bounds.max_text_hash_features} (cluster.trigger.max_text_hash_features)"
        )
    params = override.get("params") or {}
    if not isinstance(params, dict):
        return  # the model validation has refused it already
    for name, value in params.items():
        if name not in bounds.param_bounds:
            allowed = ", ".join(sorted(bounds.param_bounds))
            raise TriggerError(f"{source}: config.model.params.{name} cannot be set by a trigger file ({allowed})")
        low, high = bounds.param_bounds[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise TriggerError(f"{source}: config.model.params.{name} must be a number in [{low:g}, {high:g}]")


def parse_trigger(body: bytes, key: str, base: PackwiseConfig) -> RunRequest:
    """Validates a trigger file against the schema and `base` (the cluster's config); TriggerError if unfit.

    The run it asks for registers candidates at most as PendingManualApproval (gate.auto_approve off)
    unless the operator set cluster.trigger.allow_auto_approve.
    """
    from packwise_app.cluster import validate_params

    source = f"trigger file {key}"
    if len(body) > MAX_TRIGGER_BYTES:
        raise TriggerError(f"{source}: more than {MAX_TRIGGER_BYTES} bytes; a trigger file is at most that")
    try:
        data = _load_bounded(body.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise TriggerError(f"{source}: not valid YAML or JSON ({str(err).splitlines()[0]})") from None
    except _UnboundedYamlError as err:
        raise TriggerError(f"{source}: {err}") from None
    except RecursionError:  # belt and braces: the depth bound should have stopped it
        raise TriggerError(f"{source}: nested too deeply to read") from None
    if not isinstance(data, dict):
        raise TriggerError(f"{source}: expected a mapping with `pipeline`, `params` and optionally `config`")
    try:
        trigger = TriggerFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "file"
        if first["type"] == "extra_forbidden":
            raise TriggerError(f"{source}: unknown key {loc!r}; use pipeline, params, config, run_name") from None
        raise TriggerError(f"{source}: {loc}: {first['msg']}") from None
    forbidden = _forbidden_keys(trigger.config)
    if forbidden:
        allowed = ", ".join(f"config.{name}" for name in sorted(OVERRIDABLE_SECTIONS))
        raise TriggerError(
            f"{source}: {forbidden} cannot be set by a trigger file (only {allowed}, within cluster.trigger's "
            "bounds; never the gate, thresholds, features, split, SQL or where runs write)"
        )
    try:
        config = parse_config(_merge(base.model_dump(mode="json"), trigger.config), f"{source}: config")
        check_plugins(config, f"{source}: config")
        params = validate_params(trigger.pipeline, trigger.params, f"{source}: params")
    except ConfigError as err:
        raise TriggerError(str(err)) from None
    model_override = trigger.config.get("model")
    if isinstance(model_override, dict):
        _check_model_bounds(model_override, config, source)
    if not base.cluster.trigger.allow_auto_approve:
        config = config.model_copy(update={"gate": config.gate.model_copy(update={"auto_approve": False})})
    return RunRequest(trigger.pipeline, params, config, trigger.run_name)
