"""Packwise's train image under SageMaker's container contract, in Docker, as SageMaker local mode runs it.

A temporary directory laid out as SageMaker mounts ``/opt/ml`` (channels as parquet, hyperparameters.json;
for scoring, a Processing job's models and data) is mounted at ``/opt/ml`` and the image runs
``python -m packwise.sagemaker.entry train`` / ``score``. The model it writes must load in the local scorer
and predict what a model trained here on the same data and seed predicts; a bad hyperparameter must end
in ``output/failure`` with a non-zero exit.

Skipped, with the reason, without a Docker engine or when the train image is not built from this tree
(the `io.packwise.source` label, as tests/integration/test_images.py checks); never builds an image.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from packwise.config import PackwiseConfig
from packwise_components.images import resolve_images
from tests.conftest import make_config, seed
from tests.sagemaker_layout import (
    assert_scored_like,
    change_model_hyperparameter,
    lay_out_scoring,
    lay_out_training,
    train_locally,
)
from tests.split_data import extracted_splits

ROOT = Path(__file__).resolve().parents[2]
IMAGE = resolve_images().ref("train")  # the image skaffold's eks profile pushes for SageMaker too


def _source_hash() -> ModuleType:
    spec = importlib.util.spec_from_file_location("packwise_image_source", ROOT / "images" / "source_hash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problem() -> tuple[Any, str | None]:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return None, "no Docker engine reachable: start dockerd or run scripts/ci-docker.sh"
    try:
        labels = client.images.get(IMAGE).attrs["Config"].get("Labels") or {}
    except Exception:
        return None, f"image {IMAGE} not built: run images/build-all.sh first"
    source = _source_hash()
    built_from, here = labels.get(source.LABEL), source.source_hash(ROOT)
    if built_from is not None and built_from != here:
        return None, f"{IMAGE} was built from other code ({built_from}, this tree is {here}): run images/build-all.sh"
    return client, None


CLIENT, PROBLEM = _problem()
pytestmark = pytest.mark.skipif(CLIENT is None, reason=PROBLEM or "")


def _open_up(root: Path) -> None:
    """The image runs as a non-root user: let it write where SageMaker lets the container write."""
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o777 if path.is_dir() else 0o666)


def _run_entry(root: Path, command: str) -> tuple[int, str]:
    assert CLIENT is not None
    container = CLIENT.containers.run(
        IMAGE,
        ["python", "-m", "packwise.sagemaker.entry", command],
        volumes={str(root): {"bind": "/opt/ml", "mode": "rw"}},
        network_mode="none",
        detach=True,
    )
    try:
        status = container.wait(timeout=600)
        return int(status["StatusCode"]), container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PackwiseConfig:
    config = make_config(tmp_path_factory.mktemp("sm-docker") / "state", model={"num_boost_round": 20})
    seed(config, seed=7, n_products=1_500, weeks=1, labels_per_week=900)
    return config


@pytest.fixture(scope="module")
def splits(cfg: PackwiseConfig) -> dict[str, Path]:
    return extracted_splits(cfg, "sm-docker")


@pytest.mark.parametrize("model_type", ["xgboost_text", "stacked_text"])
def test_the_train_image_trains_and_scores_under_the_sagemaker_layout_like_local_code(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path, model_type: str
) -> None:
    from packwise.artifact import load_model_artifact
    from packwise.models.base import predict
    from packwise.split import read_split

    model = cfg.model.model_copy(update={"type": model_type})
    root = tmp_path / "opt-ml"
    lay_out_training(root, splits, "box", cfg, model)
    (root / "model").mkdir()
    (root / "output").mkdir()
    _open_up(root)
    code, logs = _run_entry(root, "train")
    assert code == 0, logs
    assert not (root / "output" / "failure").exists()

    local_file = train_locally(cfg, splits, model, tmp_path / "local.tar.gz")
    theirs, ours = load_model_artifact(root / "model" / "model.tar.gz"), load_model_artifact(local_file)
    assert theirs.model_type == model_type
    products, _ = read_split(splits["validation"], "box")
    local_prob, _ = predict(ours.booster, ours.spec, products)
    np.testing.assert_allclose(predict(theirs.booster, theirs.spec, products)[0], local_prob, rtol=0, atol=1e-6)

    lay_out_scoring(root, root / "model" / "model.tar.gz", products)
    _open_up(root)
    code, logs = _run_entry(root, "score")
    assert code == 0, logs
    assert_scored_like(root, products, local_prob)


def test_a_bad_hyperparameter_fails_the_container_with_its_reason(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "opt-ml"
    lay_out_training(root, splits, "box", cfg, cfg.model.model_copy(update={"type": "xgboost_text"}))
    change_model_hyperparameter(root, type="nope")
    (root / "output").mkdir()
    _open_up(root)
    code, logs = _run_entry(root, "train")
    assert code == 1, logs
    assert "unknown model type 'nope'" in (root / "output" / "failure").read_text()


PROBE = """
import sys, time, urllib.request
for _ in range(120):
    try:
        if urllib.request.urlopen("http://127.0.0.1:8080/ping", timeout=5).status == 200:
            break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("serve never answered /ping")
body = open("/opt/ml/request.parquet", "rb").read()
request = urllib.request.Request(
    "http://127.0.0.1:8080/invocations", data=body, headers={"Content-Type": "application/x-parquet"}
)
with urllib.request.urlopen(request, timeout=300) as response:
    assert response.headers["Content-Type"] == "application/x-parquet", response.headers
    open("/opt/ml/response.parquet", "wb").write(response.read())
"""


def test_the_train_image_serves_a_registered_stacked_text_package_as_sagemaker_starts_it(
    cfg: PackwiseConfig, splits: dict[str, Path], tmp_path: Path
) -> None:
    """A model package on Packwise's image: SageMaker extracts its ModelDataUrl (Packwise's model.tar.gz)
    under /opt/ml/model and runs ``docker run <image> serve``; /invocations answers the local scorer's
    probabilities for parquet of raw product columns."""
    import tarfile

    from packwise.artifact import load_model_artifact
    from packwise.models.base import predict
    from packwise.split import read_split
    from packwise.training import train

    assert CLIENT is not None
    model_file = tmp_path / "model.tar.gz"
    model = cfg.model.model_copy(update={"type": "stacked_text"})
    train(splits["train"], splits["validation"], "box", cfg.features, model, model_file, "k", "fp")
    root = tmp_path / "opt-ml"
    with tarfile.open(model_file) as tar:
        tar.extractall(root / "model", filter="data")
    products, _ = read_split(splits["validation"], "box")
    products.to_parquet(root / "request.parquet", index=False)
    _open_up(root)
    container = CLIENT.containers.run(
        IMAGE, ["serve"], volumes={str(root): {"bind": "/opt/ml", "mode": "rw"}}, network_mode="none", detach=True
    )
    try:
        code, output = container.exec_run(["python", "-c", PROBE])
        assert code == 0, output.decode() + container.logs().decode()
    finally:
        container.remove(force=True)
    scored = pq.read_table(root / "response.parquet").to_pandas()
    assert scored["product_id"].tolist() == products["product_id"].astype(str).tolist()
    local = load_model_artifact(model_file)
    local_prob, _ = predict(local.booster, local.spec, products)
    np.testing.assert_allclose(scored["suitability_probability"].to_numpy(), local_prob, rtol=0, atol=1e-6)
