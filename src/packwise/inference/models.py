"""Which model scores each package type: the pins of `--model`, the check before a run starts and the
resolve-models step (its champion or pinned version, copied under ``inference/models``). Split from
`packwise.inference.steps` by concern; importable from `packwise.inference`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packwise.config import RegistryConfig
from packwise.errors import ConfigError, ModelNotFoundError
from packwise.inference.shards import inference_dir
from packwise.progress import task_report

if TYPE_CHECKING:
    from packwise.registry import Registry


def parse_pins(items: Sequence[str]) -> dict[str, int]:
    """`TYPE=VERSION` strings (the CLI's `--model`) as a mapping."""
    pins: dict[str, int] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip() or not raw.strip().isdigit() or int(raw) < 1:
            raise ConfigError(f"--model {item!r}: expected TYPE=VERSION, e.g. --model mailer=3")
        pins[name.strip()] = int(raw)
    return pins


def check_models(registry: Registry, package_types: Sequence[str], pinned: Mapping[str, int]) -> dict[str, Any]:
    """The registry version every package type would be scored with; the CLI checks it before a run starts.

    Args:
        registry: An open `packwise.registry.Registry`.
        package_types: The configured package types.
        pinned: Pinned versions by package type.

    Returns:
        The `ModelVersion` of each type: the pinned one, else the champion.

    Raises:
        ConfigError: A pin names a package type that is not configured.
        ModelNotFoundError: A type has no Approved version, or a pinned version is missing or Rejected.
    """
    from packwise.registry import Status

    unknown = sorted(set(pinned) - set(package_types))
    if unknown:
        raise ConfigError(
            f"--model {unknown[0]}={pinned[unknown[0]]}: {unknown[0]!r} is not a configured package type "
            f"({', '.join(package_types)})"
        )
    chosen: dict[str, Any] = {}
    missing: list[str] = []
    for package_type in package_types:
        if package_type in pinned:
            version = registry.get(package_type, int(pinned[package_type]))  # ModelNotFoundError if absent
            if version.status == Status.REJECTED:
                raise ModelNotFoundError(
                    f"--model {package_type}={version.version}: that version is Rejected; pin another one "
                    f"(`packwise registry list --type {package_type}`) or approve it with "
                    f"`packwise registry approve {package_type} {version.version}`"
                )
        else:
            champion = registry.champion(package_type)
            if champion is None:
                missing.append(package_type)
                continue
            version = champion
        chosen[package_type] = version
    if missing:
        names = ", ".join(repr(t) for t in missing)
        raise ModelNotFoundError(
            f"no Approved model for package type{'s' if len(missing) > 1 else ''} {names}; train one with "
            f"`packwise train --week N` or approve a version with `packwise registry approve {missing[0]} VERSION`"
        )
    return chosen


RECIPE_FILE = "recipe.json"


def _model_recipe(model_file: Path, recipe_uri: str) -> dict[str, str]:
    """The model type and feature recipe (JSON) of a copied model file: from its ``recipe.json``, else loaded.

    The recipe is read from the booster (`packwise.artifact.load_model_artifact`) the first time and stored
    beside the copy; a version's file never changes, so neither does its recipe.
    """
    from packwise.storage import read_bytes, write_bytes

    stored = read_bytes(recipe_uri)
    if stored is not None:
        found = json.loads(stored.decode())
        if isinstance(found, dict) and isinstance(found.get("spec"), str) and isinstance(found.get("model_type"), str):
            return {"model_type": found["model_type"], "spec": found["spec"]}
    from packwise.artifact import load_model_artifact

    loaded = load_model_artifact(model_file)
    recipe = {"model_type": loaded.model_type, "spec": loaded.spec.to_json()}
    write_bytes(recipe_uri, (json.dumps(recipe, indent=2, sort_keys=True) + "\n").encode())
    return recipe


def resolve_models(
    registry_config: RegistryConfig,
    package_types: Sequence[str],
    thresholds: Mapping[str, float],
    pinned: Mapping[str, int],
    storage_root: str | Path,
    run_id: str,
) -> dict[str, Any]:
    """The model of every package type: its champion, or the pinned version.

    Model files are copied to ``inference/models/<type>/v<version>/model.tar.gz`` (once; a version's
    file never changes). The feature recipe inside each file is part of the result, so later steps know
    which columns the models read without loading them. The copy's recipe and model type are written
    beside it as ``recipe.json`` when it is made; later runs read that instead of loading the booster, so
    this task does not import XGBoost (and its scikit-learn and SciPy) once every version was seen.

    Raises:
        ConfigError: A pin names a package type that is not configured.
        ModelNotFoundError: A type has no Approved version, or a pinned version is missing or Rejected.
    """
    from packwise.faults import maybe_fail
    from packwise.lineage import write_run_record
    from packwise.registry import open_registry
    from packwise.storage import task_storage

    with task_report("resolve-models", None), task_storage(storage_root) as storage:
        maybe_fail("resolve-models")
        registry = open_registry(registry_config)
        chosen = check_models(registry, package_types, pinned)
        models: dict[str, Any] = {}
        for package_type, version in chosen.items():
            local = inference_dir(storage.local_root) / "models" / package_type / f"v{version.version}"
            dest = storage.stage_in(storage.uri(local / "model.tar.gz"))  # an s3 root: the copy made before
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=dest.parent) as scratch:
                    downloaded = registry.download_model(package_type, version.version, Path(scratch))
                    os.replace(downloaded, dest)
                storage.stage_out(dest)
            recipe = _model_recipe(dest, storage.uri(dest.parent / RECIPE_FILE))
            models[package_type] = {
                "version": version.version,
                "status": str(version.status),
                "pinned": package_type in pinned,
                "model_type": recipe["model_type"],
                "threshold": float(thresholds.get(package_type, 0.5)),
                "path": storage.uri(dest),
                "spec": recipe["spec"],
            }
        result = {"package_types": list(package_types), "models": models}
        write_run_record(
            storage_root,
            f"{run_id}.models",
            {t: {k: v for k, v in m.items() if k != "spec"} for t, m in models.items()},
        )
        return result


def model_versions(models: Mapping[str, Any]) -> dict[str, int]:
    """`{package type: version}` of a `resolve_models` result."""
    return {t: int(m["version"]) for t, m in models["models"].items()}
