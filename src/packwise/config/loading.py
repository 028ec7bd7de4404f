"""Reading a config: YAML files, JSON pipeline parameters and `--set` overrides, and the generated reference."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from packwise.config.ml import Limit, PackageTypeConfig
from packwise.config.root import PackwiseConfig
from packwise.errors import ConfigError


def _dotted_keys(value: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a dumped config; list entries appear once, as `*` (`package_types.*.name`)."""
    if isinstance(value, dict):
        keys = []
        for name, child in value.items():
            key = f"{prefix}{name}"
            keys.append(key)
            keys += _dotted_keys(child, f"{key}.")
        return keys
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return sorted({k for item in value for k in _dotted_keys(item, f"{prefix}*.")})
    return []


def suggest_key(dotted: str) -> str | None:
    """The configuration key closest to a misspelt `dotted` one (list indices kept), or None."""
    pattern = re.sub(r"\.\d+(?=\.|$)", ".*", dotted)
    keys = _dotted_keys(PackwiseConfig().model_dump(mode="json"))
    depth = pattern.count(".")
    match = difflib.get_close_matches(pattern, [k for k in keys if k.count(".") == depth], n=1, cutoff=0.6)
    if not match:
        return None
    indices = iter(re.findall(r"\.(\d+)(?=\.|$)", dotted))
    return re.sub(r"\*", lambda _: next(indices, "0"), match[0])


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    # list indices stay in the path: `package_types.1.threshold` names the entry to fix
    loc = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        suggestion = suggest_key(loc)
        hint = f"did you mean {suggestion!r}?" if suggestion else "check its spelling in the configuration reference"
        return f"{source}: unknown key {loc!r}; {hint}"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {loc or 'config'}: {msg}"


def parse_config(data: dict[str, Any], source: str = "config") -> PackwiseConfig:
    """Validates a mapping into a config; raises ConfigError naming the first bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return PackwiseConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies `key.path=value` overrides; values are parsed as YAML scalars or lists."""
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set split.train_ratio=0.7")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, RecursionError) as err:
            reason = " ".join(str(err).split()[:6]) if isinstance(err, yaml.YAMLError) else "nested too deeply"
            raise ConfigError(
                f"--set {key.strip()}: value {raw!r} is not valid YAML ({reason}); quote it or fix the brackets"
            ) from None
        _set_path(out, key.strip(), value)
    return out


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> PackwiseConfig:
    """Loads the YAML file (or the embedded defaults when `path` is None) and applies overrides."""
    data: dict[str, Any] = {}
    source = "embedded defaults"
    if path is not None:
        source = str(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such config file; run `packwise config init {path}` to write one")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
        data = loaded
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} with --set"
    return parse_config(data, source)


def config_from_json(text: str) -> PackwiseConfig:
    return parse_config(json.loads(text), "pipeline parameter")


def dump_default_config() -> str:
    """The embedded defaults as commented YAML, the starting point of a user's file."""
    body = yaml.safe_dump(PackwiseConfig().model_dump(mode="json"), sort_keys=False, width=100)
    return "# Packwise configuration. Every key is optional; see README.md#configuration-reference.\n" + body



def config_reference() -> str:
    """The configuration reference as a Markdown table, generated from the model (the README embeds it)."""
    rows = ["| key | default | description |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str, instance: BaseModel) -> None:
        for name, field in model.model_fields.items():
            value = getattr(instance, name)
            key = f"{prefix}{name}"
            if isinstance(value, BaseModel) and not isinstance(value, Limit):
                walk(type(value), f"{key}.", value)
                continue
            if isinstance(value, Limit):
                default = f"review {value.review}, reject {value.reject}"
            elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
                default = ", ".join(
                    f"{v.name} ({v.threshold})" if isinstance(v, PackageTypeConfig) else str(v) for v in value
                )
            else:
                default = json.dumps(value, default=str)
            if len(default) > 60:
                default = default[:57] + "..."
            description = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | `{default.replace('|', '/')}` | {description} |")

    walk(PackwiseConfig, "", PackwiseConfig())
    return "\n".join(rows)
