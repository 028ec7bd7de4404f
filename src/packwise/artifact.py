"""Model files in SageMaker's built-in XGBoost layout: `model.tar.gz` holding the booster `xgboost-model`.

The booster is saved in XGBoost's native UBJSON format by xgboost 3.0.5, the version inside SageMaker's
XGBoost 3.0-5 container, so a model trained here runs in a SageMaker transform job and one trained by
SageMaker scores here. Packwise's own metadata (model type, feature recipe) rides in booster attributes
inside that one file, which the container ignores; a file without them still loads if the caller supplies
the feature recipe.

A model type whose recipe has stacked columns (a model fitted at training time that computes booster
inputs, e.g. `stacked_text`'s title logit) adds one member beside the booster, `packwise-stacked.json`;
the recipe in the booster records its SHA-256, checked on load. Other types' archives hold the booster only.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packwise.errors import PackwiseError
from packwise.features import FeatureSpec, StackedColumns
from packwise.files import atomic_write

if TYPE_CHECKING:
    import xgboost as xgb

BOOSTER_FILE = "xgboost-model"
STACKED_FILE = "packwise-stacked.json"
ATTR_SPEC = "packwise_feature_spec"
ATTR_MODEL_TYPE = "packwise_model_type"
ATTR_PACKAGE_TYPE = "packwise_package_type"


@dataclass
class LoadedModel:
    booster: xgb.Booster
    spec: FeatureSpec
    model_type: str
    package_type: str | None


def save_model_artifact(
    booster: xgb.Booster, spec: FeatureSpec, model_type: str, package_type: str, path: Path
) -> Path:
    """Writes `path` (a model.tar.gz) atomically and byte-for-byte reproducibly."""
    booster.set_attr(**{ATTR_SPEC: spec.to_json(), ATTR_MODEL_TYPE: model_type, ATTR_PACKAGE_TYPE: package_type})
    raw = bytes(booster.save_raw(raw_format="ubj"))
    members = [(BOOSTER_FILE, raw)]
    if spec.stacked is not None:
        members.append((STACKED_FILE, spec.stacked.to_bytes()))
    with atomic_write(path) as tmp, tmp.open("wb") as fh:
        import gzip

        # mtime 0 and no file name (the temporary one) in the gzip header: the same booster gives the same bytes
        with (
            gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w") as tar,
        ):
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    return path


def read_booster_bytes(path: Path) -> bytes:
    """The `xgboost-model` member of a model.tar.gz (or the file itself if it is a bare booster)."""
    return _read_members(path)[0]


def carries_stacked_columns(path: Path) -> bool:
    """Whether a model file holds stacked columns beside its booster (only Packwise's code can score it)."""
    return _read_members(path)[1] is not None


def _read_members(path: Path) -> tuple[bytes, bytes | None]:
    """The booster and the stacked-columns member (None when absent) of a model file, or of the folder a
    model.tar.gz was extracted into (SageMaker's ``/opt/ml/model`` when it serves a model package)."""
    if not path.exists():
        raise PackwiseError(f"model file {path} does not exist; check the registry entry or re-run training")
    if path.is_dir():
        if (path / BOOSTER_FILE).is_file():
            beside = path / STACKED_FILE
            return (path / BOOSTER_FILE).read_bytes(), beside.read_bytes() if beside.is_file() else None
        if (path / "model.tar.gz").is_file():
            return _read_members(path / "model.tar.gz")
        raise PackwiseError(f"{path}: no {BOOSTER_FILE} or model.tar.gz inside; extract Packwise's model.tar.gz there")
    if not tarfile.is_tarfile(path):
        return path.read_bytes(), None
    with tarfile.open(path, "r:*") as tar:
        names = [m for m in tar.getmembers() if m.isfile()]
        member = next((m for m in names if Path(m.name).name == BOOSTER_FILE), None)
        if member is None and len(names) == 1:
            member = names[0]
        if member is None:
            raise PackwiseError(f"{path}: no {BOOSTER_FILE} inside; expected SageMaker's XGBoost model layout")
        stacked = next((m for m in names if Path(m.name).name == STACKED_FILE), None)
        return _member_bytes(tar, member), None if stacked is None else _member_bytes(tar, stacked)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    assert fh is not None
    return fh.read()


def load_model_artifact(path: Path, spec: FeatureSpec | None = None) -> LoadedModel:
    """Loads a model.tar.gz written by Packwise or by SageMaker's XGBoost container.

    Args:
        path: The model.tar.gz, a bare booster file, or a folder holding the extracted model.tar.gz.
        spec: The feature recipe, needed only when the file carries none (trained outside Packwise).
    """
    import xgboost as xgb

    raw, stacked_raw = _read_members(path)
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    spec_json = booster.attr(ATTR_SPEC)
    if spec_json is not None:
        spec = FeatureSpec.from_json(spec_json, _load_stacked(path, spec_json, stacked_raw))
    if spec is None:
        raise PackwiseError(
            f"{path}: the model carries no Packwise feature recipe; pass the recipe it was trained with"
        )
    return LoadedModel(
        booster=booster,
        spec=spec,
        model_type=booster.attr(ATTR_MODEL_TYPE) or "xgboost",
        package_type=booster.attr(ATTR_PACKAGE_TYPE),
    )


def _load_stacked(path: Path, spec_json: str, data: bytes | None) -> StackedColumns | None:
    ref = FeatureSpec.stacked_of(spec_json)
    if ref is None:
        return None
    if data is None:
        raise PackwiseError(f"{path}: the model's recipe needs {STACKED_FILE}, which is not inside; re-run training")
    from packwise.models import load_stacked_columns

    return load_stacked_columns(str(ref.get("kind")), data)
